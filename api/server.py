"""Serving the app: aiohttp's runner, with its own error answers in the seed's format.

A request aiohttp cannot parse (a control character in a header or the request line, a line too
long) never reaches a middleware: aiohttp's connection handler answers it itself, with a text/plain
400 that quotes the offending line back, and logs it as an ERROR with that line in the
traceback. That line is often a credential (``Authorization: Bearer md_live_...``) or an inbound
URL (``POST /<token>``). Here the same answer is the error JSON with nothing of the request in
it, and the log line names only the kind of error.

aiohttp has no public hook for this (aio-libs/aiohttp#3287): ``AppRunner`` builds its
``web.Server`` and that builds the connection handlers, so both are subclassed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from contextlib import suppress
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler

from api.responses import error

log = logging.getLogger("monoduty.api")

_CODES = {400: "BAD_REQUEST", 413: "PAYLOAD_TOO_LARGE", 431: "BAD_REQUEST", 500: "INTERNAL_ERROR"}


class _RequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The error JSON for a request aiohttp refused (or a failure no middleware caught)."""
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            # Not the client's fault: keep the traceback (the log formatter redacts it).
            log.error("unhandled error while serving a request: %s", kind, exc_info=exc)
            text = "internal server error"
        else:
            # The exception's text quotes the raw request: only its kind is worth a line. Not
            # HTTP at all (TLS or a scanner on the plain port) is noise, as aiohttp judges it too.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
            log.log(level, "refused a malformed HTTP request (%s, %s)", status, kind)
            text = "malformed HTTP request"
        if request.writer.output_size > 0:
            # Part of an answer is out already; aiohttp closes the connection on this.
            raise ConnectionError("response already started, cannot send the error answer")
        response = error(status, _CODES.get(status, "BAD_REQUEST"), text)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        # web.Server.__call__, with our handler class (it keeps the same arguments).
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer what aiohttp refuses in the error format."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same state, one method changed
        return server


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 60.0,
    print: Any = None,  # web.run_app's own parameter, accepted so callers can switch freely
    **kwargs: Any,
) -> None:
    """``web.run_app`` for one TCP address, on ``AppRunner``: SIGINT/SIGTERM stop it gracefully
    (stop listening, let requests in flight finish for up to ``shutdown_timeout`` seconds).
    ``kwargs`` go to the runner, and so to every connection handler, as with ``web.run_app``."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = AppRunner(app, handle_signals=True, shutdown_timeout=shutdown_timeout, **kwargs)
    main = loop.create_task(_serve(runner, host, port, ssl_context))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(main)  # runs the runner's cleanup: the graceful part
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(runner: AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        # What start-up made (modules, the app, its routes: ~100k objects) lives as long as the
        # process: out of the collector's reach, a full collection no longer walks it. Each one
        # had paused the loop for ~100 ms under load: the p99 of inbound alerts (issue 16).
        gc.freeze()
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        await runner.cleanup()
