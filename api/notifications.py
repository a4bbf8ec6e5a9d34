"""Handlers for /api/notifications, the caller's in-app inbox: parse, call the engine, answer."""

from __future__ import annotations

from aiohttp import web

from api.auth import current_user
from api.responses import ok
from api.state import POOL
from engine import notifications

routes = web.RouteTableDef()


@routes.get("/api/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    """Newest first, ``?limit=`` (max 100), ``?unread=true``, ``?cursor=`` from ``next_cursor``."""
    user = current_user(request)
    page = notifications.parse_page(request.query)
    async with request.app[POOL].acquire() as conn:
        items, cursor = await notifications.list_page(conn, user.id, page)
    return ok(notifications=items, next_cursor=cursor)


@routes.get("/api/notifications/unread-count")
async def unread_count(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        count = await notifications.unread_count(conn, user.id)
    return ok(unread_count=count)


@routes.post("/api/notifications/mark-all-read")
async def mark_all_read(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        changed = await notifications.mark_all_read(conn, user.id)
    return ok(updated=changed)


@routes.post("/api/notifications/{id}/read")
async def mark_read(request: web.Request) -> web.Response:
    user = current_user(request)
    notification_id = notifications.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        item = await notifications.mark_read(conn, user.id, notification_id)
    return ok(notification=item)
