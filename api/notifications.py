"""Handlers for /api/notifications, the caller's in-app inbox: parse, call the engine, answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import query
from api.responses import ok
from api.state import POOL
from engine import notifications

routes = web.RouteTableDef()


@routes.get("/api/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    """Newest first, ``?limit=`` (max 100), ``?unread=true``, ``?cursor=`` from ``next_cursor``."""
    user = current_user(request)
    page = notifications.parse_page(query(request, "limit", "unread", "cursor"))
    async with request.app[POOL].acquire() as conn:
        rows, cursor = await notifications.list_page(conn, user.id, page)
    return ok(notifications=[to_api(row) for row in rows], next_cursor=cursor)


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
        row = await notifications.mark_read(conn, user.id, notification_id)
    return ok(notification=to_api(row))


def to_api(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "webhook_id": str(row["webhook_id"]) if row["webhook_id"] else None,
        "alert_id": str(row["alert_id"]) if row["alert_id"] else None,
        "read": row["read_at"] is not None,
        "read_at": row["read_at"],
        "created_at": row["created_at"],
    }
