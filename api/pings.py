"""GET or POST /ping/<token> (and /start, /fail): a heartbeat's ping. The answer is tiny and the
work small (engine.heartbeats.pings): a ping loop costs Redis, not a database write per request."""

from __future__ import annotations

from aiohttp import web

from api.responses import ok
from api.state import CLOCK, POOL, REDIS, SETTINGS
from engine.heartbeats import PingKind
from engine.heartbeats.pings import MAX_BODY, record_ping

routes = web.RouteTableDef()

TOKEN_PATTERN = "{token:[A-Za-z0-9_-]{20,100}}"  # noqa: S105 - a route pattern, not a secret


async def _first_bytes(request: web.Request) -> bytes:
    """Up to MAX_BODY bytes of the body, as sent: a ping's log is kept cut, never refused (a
    refused ping would read as a missed one). aiohttp drains the rest."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY and (chunk := await request.content.read(MAX_BODY - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _ping(request: web.Request, kind: PingKind) -> web.Response:
    await record_ping(
        request.app[POOL],
        request.app[REDIS],
        request.app[CLOCK],
        request.match_info["token"],
        kind,
        lambda: _first_bytes(request),
        method=request.method,
        client=request.remote,  # the proxy's X-Forwarded-For from MONODUTY_TRUSTED_PROXIES (api/security.py)
        user_agent=request.headers.get("User-Agent"),
        limit=request.app[SETTINGS].rate_limit_inbound,
    )
    return ok()


async def ping(request: web.Request) -> web.Response:
    return await _ping(request, PingKind.SUCCESS)


async def ping_start(request: web.Request) -> web.Response:
    return await _ping(request, PingKind.START)


async def ping_fail(request: web.Request) -> web.Response:
    return await _ping(request, PingKind.FAIL)


def add_routes(app: web.Application) -> None:
    for suffix, handler in (("", ping), ("/start", ping_start), ("/fail", ping_fail)):
        path = f"/ping/{TOKEN_PATTERN}{suffix}"
        app.router.add_get(path, handler)
        app.router.add_post(path, handler)
