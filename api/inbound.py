"""POST /<token> (and /hooks/<token>): where monitoring systems send alerts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.bodies import read_body
from api.observability import count_alert_accepted
from api.responses import ok
from api.state import POOL, REDIS, REQUEST_ID, SETTINGS, TOKENS
from engine.alerts.inbound import accept_alert

routes = web.RouteTableDef()

# Long enough that no /api, /metrics or /healthz path can match it.
TOKEN_PATTERN = "{token:[A-Za-z0-9_-]{20,100}}"  # noqa: S105 - a route pattern, not a secret


async def receive_alert(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS].inbound_body_limit
    # The body is read (and inflated) only after the token, and any signature scheme, say it is
    # worth reading: an unknown URL gets its 404 whatever it sent (engine.alerts.inbound.accept_alert).
    accepted = await accept_alert(
        request.app[REDIS],
        request.app[POOL],
        request.match_info["token"],
        lambda: read_body(request, limit),
        request.headers.get("Content-Type"),
        request_id=request[REQUEST_ID],
        headers=request.headers,
        limit=request.app[SETTINGS].rate_limit_inbound,
        client=request.remote,
        tokens=request.app[TOKENS],
    )
    if accepted.queued:
        count_alert_accepted(request)
    extra: dict[str, Any] = {"dedup_key": accepted.dedup_key} if accepted.dedup_key is not None else {}
    return ok(http_status=202, alert_id=accepted.alert_id, status="queued", **extra)


def add_routes(app: web.Application) -> None:
    """Registered last so that every fixed route wins over the token pattern."""
    app.router.add_post(f"/hooks/{TOKEN_PATTERN}", receive_alert)
    app.router.add_post(f"/{TOKEN_PATTERN}", receive_alert)
