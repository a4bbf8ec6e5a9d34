"""Routes that exist only under `monoduty dev`."""

from __future__ import annotations

from aiohttp import web

from api.auth import current_user
from api.responses import ok
from api.state import POOL
from engine.channels import outbox

routes = web.RouteTableDef()


@routes.get("/api/dev/outbox")
async def list_outbox(request: web.Request) -> web.Response:
    """What dev mode would have sent for the caller's alerts, newest first."""
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        entries = await outbox.recent(conn, 100, user_id=user.id)
    return ok(messages=entries, total=len(entries))
