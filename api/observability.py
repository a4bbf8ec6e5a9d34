"""One log line, the metrics and the response time of every request, and ``GET /metrics``.

Each request is timed once, here: the time goes to the access log, to the Prometheus counters
(``GET /metrics``, text format) and, for /api and inbound requests, to the response-time recorder
behind ``GET /api/response-time``. Both buffers reach Redis about once a second.

Requests are named by their route pattern (``/{token}``), never their raw path: inbound paths
hold webhook tokens. ``/metrics`` answers loopback callers without credentials; with
``MONODUTY_METRICS_TOKEN`` set, any other caller (or a request relayed by a proxy, which carries
X-Forwarded-For or Forwarded) must send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from api.inputs import bearer
from api.middlewares import route_name
from api.state import REDIS, REQUEST_ID, RESPONSE_TIMES, SETTINGS
from engine.errors import Unauthorized
from engine.masking import mask_text
from engine.observability import logs, metrics, periodic, response_times

log = logging.getLogger("monoduty.access")

METRICS_BUFFER = web.AppKey("metrics_buffer", metrics.MetricsBuffer)
FLUSH_SECONDS = 1.0
# Probes and scrapes arrive every few seconds; their lines are kept for DEBUG.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time each request once: log ``METHOD /route status latency`` with the request id, count it
    for /metrics and keep it for /api/response-time."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects; error_middleware has rendered every error
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_name(request)
        buffer = request.app[METRICS_BUFFER]
        buffer.inc(metrics.REQUESTS, request.method, route, str(status))
        buffer.observe(metrics.REQUEST_DURATION, elapsed, route)
        _record_response_time(request, elapsed * 1000)
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        if log.isEnabledFor(level):
            _log_access(request, level, route, status, elapsed * 1000)


# What aiohttp's parser lets through as a method is any token a client sent; these are ours.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _log_access(request: web.Request, level: int, route: str, status: int, elapsed_ms: float) -> None:
    """One line per request, made of safe parts only, so that it can skip the redaction regexes
    (engine.observability.logs.TRUSTED): the route pattern, never the path; any other method or
    a request id a client chose masked here."""
    method = request.method if request.method in METHODS else mask_text(request.method)
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        request_id = mask_text(request_id)
    extra = {
        "method": method,
        "route": route,
        "status": status,
        "latency_ms": round(elapsed_ms, 1),
        "request_id": request_id,
        logs.TRUSTED: True,
    }
    # log.log() less its search of the stack for the caller's line, which no format prints.
    args = (method, route, status, elapsed_ms)
    log.handle(log.makeRecord(log.name, level, __file__, 0, "%s %s %s %.1fms", args, None, extra=extra))


def _record_response_time(request: web.Request, elapsed_ms: float) -> None:
    """Keep an /api or inbound request's time in this process's recorder (no I/O here)."""
    if request.path.startswith("/api/"):
        request.app[RESPONSE_TIMES].record("api", elapsed_ms)
    elif "{token" in route_name(request):
        request.app[RESPONSE_TIMES].record("inbound", elapsed_ms)


def count_alert_accepted(request: web.Request) -> None:
    request.app[METRICS_BUFFER].inc(metrics.ALERTS_ACCEPTED)


def _is_local(request: web.Request) -> bool:
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False  # a Unix socket or an unknown peer: treat as remote


async def metrics_view(request: web.Request) -> web.Response:
    """The deployment's metrics in Prometheus text format."""
    settings = request.app[SETTINGS]
    token = settings.metrics_token
    if token and not _is_local(request):
        given = bearer(request)
        given_bytes = (given or "").encode("utf-8", "surrogateescape")  # any header byte: no 500
        if given is None or not hmac.compare_digest(given_bytes, token.encode()):
            raise Unauthorized("metrics need Authorization: Bearer <MONODUTY_METRICS_TOKEN>")
    redis = request.app[REDIS]
    await request.app[METRICS_BUFFER].flush(redis)  # this process's latest counts too
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.SnapshotCollector(await metrics.snapshot(redis, settings.queue_name)))
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _flusher(app: web.Application) -> AsyncIterator[None]:
    buffer, times = app[METRICS_BUFFER], app[RESPONSE_TIMES]
    # Redis down: metrics keep counting and go with a later flush; response times are dropped.
    tasks = [
        periodic.start(FLUSH_SECONDS, lambda: buffer.flush(app[REDIS]), what="metrics flush", log=log),
        periodic.start(
            FLUSH_SECONDS,
            lambda: times.flush(app[REDIS]),
            what="response times flush",
            log=log,
            level=logging.DEBUG,
        ),
    ]
    yield
    for task in tasks:
        await periodic.stop(task)
    with contextlib.suppress(Exception):
        await buffer.flush(app[REDIS])


def setup(app: web.Application) -> None:
    """Add the buffers, /metrics and the periodic flush; call after the app's Redis is in its
    cleanup_ctx."""
    app[METRICS_BUFFER] = metrics.MetricsBuffer()
    app[RESPONSE_TIMES] = response_times.Recorder()
    app.cleanup_ctx.append(_flusher)
    app.router.add_get("/metrics", metrics_view)
