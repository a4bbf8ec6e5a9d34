"""The inbox (the caller's notifications: engine.notifications, as ``/api/notifications``) and the
unread badge the navigation of every page shows.

The guard counts the unread ones for every whole page (``render.UNREAD``); ``GET /inbox/badge``
is the badge alone, which the navigation asks for again when the event stream says something
changed (an alert arriving writes its notification in the same transaction as its incident).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.dashboard import views
from api.dashboard.render import BADGE_CAP, fragment_for, render, see_other
from api.inputs import query
from api.state import CLOCK, POOL
from engine import notifications
from engine.notifications import NotificationKind

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
LIST_FRAGMENT = "inbox-list"
KIND_LABELS = {
    NotificationKind.ALERT_RECEIVED.value: "Alert received",
    NotificationKind.DELIVERY_FAILED.value: "Delivery failed",
    NotificationKind.WEBHOOK_PAUSED.value: "Webhook paused",
    NotificationKind.RATE_LIMITED.value: "Rate limited",
}


def notification_row(row: asyncpg.Record | Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "kind_label": KIND_LABELS.get(row["kind"], row["kind"]),
        "title": row["title"],
        "body": row["body"] or "",
        "webhook_id": str(row["webhook_id"]) if row["webhook_id"] else None,
        "read": row["read_at"] is not None,
        "age": views.ago(row["created_at"], now),
        "at": views.clock_time(row["created_at"]),
    }


@routes.get("/inbox", name="dashboard.inbox")
async def inbox(request: web.Request) -> web.Response:
    user = current_user(request)
    params = query(request, "unread", "cursor")
    unread_only = params.get("unread") == "true"
    page = notifications.parse_page({**params, "unread": "true" if unread_only else "false"})
    async with request.app[POOL].acquire() as conn:
        rows, cursor = await notifications.list_page(conn, user.id, page)
        unread = await notifications.unread_count(conn, user.id)
    now = request.app[CLOCK].now()
    context = {
        "section": "inbox",
        "rows": [notification_row(row, now) for row in rows],
        "unread": unread,
        "unread_only": unread_only,
        "next_cursor": cursor,
        "paged": "cursor" in params,
    }
    template = "_inbox_list.html" if fragment_for(request, LIST_FRAGMENT) else "inbox.html"
    return render(request, template, context)


@routes.get("/inbox/badge", name="dashboard.inbox_badge")
async def badge(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        unread = await notifications.unread_up_to(conn, user.id, BADGE_CAP)
    return render(request, "_inbox_badge_count.html", {"unread": unread})


@routes.post(f"/inbox/{ID}/read", name="dashboard.inbox_read")
async def mark_read(request: web.Request) -> web.Response:
    user = current_user(request)
    notification_id = notifications.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await notifications.mark_read(conn, user.id, notification_id)
    return see_other(f"/inbox#n-{notification_id}")


@routes.post("/inbox/read-all", name="dashboard.inbox_read_all")
async def mark_all_read(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        await notifications.mark_all_read(conn, user.id)
    return see_other("/inbox")
