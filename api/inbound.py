"""POST /<token> (and /hooks/<token>): where monitoring systems send alerts."""

from __future__ import annotations

from aiohttp import web

from api.observability import count_alert_accepted
from api.responses import ok
from api.state import POOL, REDIS, REQUEST_ID, SETTINGS
from engine.errors import PayloadTooLarge
from engine.inbound import accept_alert

routes = web.RouteTableDef()

# Long enough that no /api, /metrics or /healthz path can match it.
TOKEN_PATTERN = "{token:[A-Za-z0-9_-]{20,100}}"  # noqa: S105 - a route pattern, not a secret


async def _read_body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS].inbound_body_limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    # read(n) answers what has arrived so far, up to n bytes: a body that comes in several
    # pieces (anything but a small one on a fast link) needs a loop, or it is silently cut.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
    return b"".join(chunks)


async def receive_alert(request: web.Request) -> web.Response:
    body = await _read_body(request)
    alert_id = await accept_alert(
        request.app[REDIS],
        request.app[POOL],
        request.match_info["token"],
        body,
        request.headers.get("Content-Type"),
        request_id=request[REQUEST_ID],
        headers=request.headers,
        limit=request.app[SETTINGS].rate_limit_inbound,
        client=request.remote,
    )
    count_alert_accepted(request)
    return ok(http_status=202, alert_id=alert_id, status="queued")


def add_routes(app: web.Application) -> None:
    """Registered last so that every fixed route wins over the token pattern."""
    app.router.add_post(f"/hooks/{TOKEN_PATTERN}", receive_alert)
    app.router.add_post(f"/{TOKEN_PATTERN}", receive_alert)
