"""Handlers for /api/maintenance-windows; the rules live in engine.maintenance.windows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_paths
from api.responses import ok
from api.state import CLOCK, POOL
from engine.maintenance import windows
from engine.maintenance.windows import WindowInput

routes = web.RouteTableDef()

# The request body's fields: wire name -> the engine's (engine.maintenance.windows.WindowInput).
NAMES = {
    "webhookId": "webhook_id",
    "teamId": "team_id",
    "startsAt": "starts_at",
    "endsAt": "ends_at",
    "duration": "duration",
    "reason": "reason",
    "pageOnEnd": "page_on_end",
}


def _input(body: object) -> WindowInput:
    return WindowInput(**fields(body, NAMES, text=("reason",), flags=("pageOnEnd",)))


@routes.get("/api/maintenance-windows")
async def list_windows(request: web.Request) -> web.Response:
    user = current_user(request)
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        found = await windows.list_windows(conn, user.id, now)
    return ok(maintenance_windows=[to_api(w, now) for w in found], total=len(found))


@routes.post("/api/maintenance-windows")
async def create_window(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = _input(await json_body(request))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_paths(NAMES):
            window = await windows.create_window(conn, user.id, wanted, now)
    return ok(http_status=201, maintenance_window=to_api(window, now))


@routes.get("/api/maintenance-windows/{id}")
async def get_window(request: web.Request) -> web.Response:
    user = current_user(request)
    window_id = windows.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        window = await windows.get_window(conn, user.id, window_id)
    return ok(maintenance_window=to_api(window, request.app[CLOCK].now()))


@routes.patch("/api/maintenance-windows/{id}")
async def update_window(request: web.Request) -> web.Response:
    """Change a window not ended; ``endsAt`` now (or past) ends it early."""
    user = current_user(request)
    window_id = windows.parse_id(request.match_info["id"])
    wanted = _input(await json_body(request))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_paths(NAMES):
            window = await windows.update_window(conn, user.id, window_id, wanted, now)
    return ok(maintenance_window=to_api(window, now))


@routes.delete("/api/maintenance-windows/{id}")
async def delete_window(request: web.Request) -> web.Response:
    """End an active window now (``deleted`` false: it stays listed as ended), or remove one not
    started or already over (``deleted`` true)."""
    user = current_user(request)
    window_id = windows.parse_id(request.match_info["id"])
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        window = await windows.delete_window(conn, user.id, window_id, now)
    if window is None:
        return ok(deleted=True, maintenance_window=None)
    return ok(deleted=False, maintenance_window=to_api(window, now))


def to_api(window: asyncpg.Record, now: datetime) -> dict[str, Any]:
    return {
        "id": str(window["id"]),
        "team_id": str(window["team_id"]),
        "webhook_id": str(window["webhook_id"]) if window["webhook_id"] else None,
        "status": windows.status(window, now).value,
        "starts_at": window["starts_at"],
        "ends_at": window["ends_at"],
        "reason": window["reason"],
        "page_on_end": window["page_on_end"],
        "created_by": str(window["created_by"]) if window["created_by"] else None,
        "created_at": window["created_at"],
        "ended_at": window["ended_at"],
    }
