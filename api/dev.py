"""Routes that exist only under `monoduty dev`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.auth import current_user
from api.responses import ok
from api.state import POOL, SETTINGS
from engine.channels import outbox
from engine.errors import NotFound

routes = web.RouteTableDef()


@routes.get("/api/dev/outbox")
async def list_outbox(request: web.Request) -> web.Response:
    """What dev mode would have sent for the caller's alerts, newest first.

    The route exists outside dev too, answering 404, so that it behaves like every other route
    (other methods are a 405 with Allow) instead of vanishing into the catch-all 404."""
    entries = await outbox_entries(request)
    return ok(messages=entries, total=len(entries))


async def outbox_entries(request: web.Request) -> list[dict[str, Any]]:
    """The caller's newest 100 outbox entries; not found outside dev (the dashboard's too)."""
    user = current_user(request)
    if not request.app[SETTINGS].dev:
        raise NotFound("the outbox exists only under `monoduty dev`", code="NOT_FOUND")
    async with request.app[POOL].acquire() as conn:
        return await outbox.recent(conn, 100, user_id=user.id)
