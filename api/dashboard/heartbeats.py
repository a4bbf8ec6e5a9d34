"""Heartbeats on the dashboard's webhook page: each one's status, last ping, next expected ping,
ping URL and recent pings; a create form; pause and resume.

The form is turned into the engine's ``HeartbeatInput`` (engine.heartbeats.crud, as ``POST
/api/webhooks/<id>/heartbeats`` does) and the engine's checks are the form's: a ValidationError
is shown at the field it names. Who may do what (a viewer reads; an admin of the webhook's team
creates, pauses and resumes) is the engine's rule too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.dashboard import views
from api.dashboard.field_errors import at_field
from api.dashboard.render import form, see_other
from api.state import CLOCK, POOL, SETTINGS
from engine import db, webhooks
from engine.errors import ValidationError
from engine.heartbeats import HeartbeatStatus, crud
from engine.heartbeats.state import State, shown_status
from engine.heartbeats.timing import format_duration
from engine.validate import UNSET

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
HEARTBEAT_ID = "{heartbeat_id:[0-9a-fA-F-]{36}}"
SHOWN_PINGS = 10  # the last pings under each heartbeat (the API lists 100)
# The engine's field -> (the form's field, its label).
FIELDS = {
    "name": ("heartbeat_name", "Name"),
    "period": ("period", "Period"),
    "cron": ("cron", "Cron"),
    "time_zone": ("time_zone", "Time zone"),
    "grace": ("grace", "Grace"),
}
STATUS_LABELS = {
    HeartbeatStatus.NEW: "New: waiting for its first ping",
    HeartbeatStatus.UP: "Up",
    HeartbeatStatus.LATE: "Late: its ping is overdue, within its grace",
    HeartbeatStatus.DOWN: "Down",
    HeartbeatStatus.PAUSED: "Paused: not checked",
}
KIND_LABELS = {"success": "success", "start": "start", "fail": "fail"}


def _wanted(given: Mapping[str, str]) -> crud.HeartbeatInput:
    """The form as the engine's input; an empty field is one left out (the engine then says which
    of period and cron it needs)."""

    def given_or_unset(name: str) -> object:
        value = given.get(name, "").strip()
        return value if value else UNSET

    return crud.HeartbeatInput(
        name=given.get("heartbeat_name", ""),
        period=given_or_unset("period"),
        cron=given_or_unset("cron"),
        time_zone=given_or_unset("time_zone"),
        grace=given_or_unset("grace"),
    )


def heartbeat_row(row: Any, pings: list[Any], base: str, now: datetime) -> dict[str, Any]:
    status = shown_status(State.of(row), now)
    period = row["period_seconds"]
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "status": status.value,
        "status_label": STATUS_LABELS[status],
        "schedule": f"every {format_duration(period)}"
        if period is not None
        else f"cron “{row['cron']}” ({row['time_zone']})",
        "grace": format_duration(row["grace_seconds"]),
        "ping_url": f"{base}/ping/{row['token']}",
        "last_ping": views.ago(row["last_ping_at"], now) if row["last_ping_at"] else "never",
        "last_ping_at": views.clock_time(row["last_ping_at"]),
        "next_expected": views.clock_time(row["expected_at"]) if row["expected_at"] else "",
        "paused": status is HeartbeatStatus.PAUSED,
        "pings": [
            {
                "at": views.clock_time(p["received_at"]),
                "ago": views.ago(p["received_at"], now),
                "kind": KIND_LABELS.get(p["kind"], p["kind"]),
                "source": p["source_ip"] or "",
                "client": views.client_name(p["user_agent"] or "") if p["user_agent"] else "",
            }
            for p in pings[:SHOWN_PINGS]
        ],
    }


async def section(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID, base: str, now: datetime
) -> list[dict[str, Any]]:
    """The webhook's heartbeats as its page shows them (a viewer of its team may read them)."""
    rows, _ = await crud.list_heartbeats(conn, user_id, webhook_id)
    shown = []
    for row in rows:
        _, recent = await crud.get_heartbeat(conn, user_id, webhook_id, row["id"])
        shown.append(heartbeat_row(row, recent, base, now))
    return shown


async def create_from_form(
    request: web.Request, webhook_id: uuid.UUID
) -> tuple[uuid.UUID | None, dict[str, str]]:
    """The create form sent to the engine: (the new heartbeat's id, {}) or (None, its error at
    its field); the webhook page's route (api/dashboard/webhooks.py) shows the page again then."""
    user = current_user(request)
    try:
        async with request.app[POOL].acquire() as conn:
            row = await crud.create_heartbeat(
                conn,
                user.id,
                webhook_id,
                _wanted(await form(request)),
                request.app[CLOCK].now(),
                min_period=request.app[SETTINGS].min_heartbeat_period,
            )
    except ValidationError as exc:
        name, message = at_field(exc, FIELDS)
        return None, {name: message}
    return row["id"], {}


@routes.post(f"/webhooks/{ID}/heartbeats/{HEARTBEAT_ID}/pause", name="dashboard.heartbeat_pause")
@routes.post(f"/webhooks/{ID}/heartbeats/{HEARTBEAT_ID}/resume", name="dashboard.heartbeat_resume")
async def pause_or_resume(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    heartbeat_id = crud.parse_id(request.match_info["heartbeat_id"])
    pause = request.path.endswith("/pause")
    async with request.app[POOL].acquire() as conn:
        if pause:
            await crud.pause_heartbeat(conn, user.id, webhook_id, heartbeat_id)
        else:
            await crud.resume_heartbeat(conn, user.id, webhook_id, heartbeat_id, request.app[CLOCK].now())
    done = "heartbeat_paused" if pause else "heartbeat_resumed"
    return see_other(f"/webhooks/{webhook_id}?done={done}#heartbeat-{heartbeat_id}")
