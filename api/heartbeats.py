"""Handlers for /api/webhooks/{id}/heartbeats: parse, call the engine, answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_names
from api.responses import ok
from api.state import CLOCK, POOL, REDIS, SETTINGS, public_url
from engine import webhooks
from engine.heartbeats import crud, pings
from engine.heartbeats.state import Row, State, shown_status
from engine.heartbeats.timing import format_duration

routes = web.RouteTableDef()

# The request body's fields: wire name -> the engine's (engine.heartbeats.crud.HeartbeatInput).
NAMES = {"name": "name", "period": "period", "cron": "cron", "timeZone": "time_zone", "grace": "grace"}
ONE = "/api/webhooks/{id}/heartbeats/{heartbeat_id}"


def heartbeat_input(body: object) -> crud.HeartbeatInput:
    return crud.HeartbeatInput(**fields(body, NAMES, text=("name",)))


def _ids(request: web.Request) -> tuple[uuid.UUID, uuid.UUID]:
    """The webhook's id and the heartbeat's, from the path of a route of one heartbeat."""
    return webhooks.parse_id(request.match_info["id"]), crud.parse_id(request.match_info["heartbeat_id"])


@routes.get("/api/webhooks/{id}/heartbeats")
async def list_heartbeats(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        rows, last = await crud.list_heartbeats(conn, user.id, webhook_id)
    counted = await pings.counted(request.app[REDIS], [r["id"] for r in rows])
    now, base = request.app[CLOCK].now(), public_url(request)
    answers = [
        {**to_api(r, base, now, counted.get(r["id"], 0)), "last_ping": _last(last.get(r["id"]))} for r in rows
    ]
    return ok(heartbeats=answers)


@routes.post("/api/webhooks/{id}/heartbeats")
async def create_heartbeat(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    wanted = heartbeat_input(await json_body(request))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_names(NAMES):
            row = await crud.create_heartbeat(
                conn, user.id, webhook_id, wanted, now, min_period=request.app[SETTINGS].min_heartbeat_period
            )
    return ok(http_status=201, heartbeat=to_api(row, public_url(request), now))


@routes.get(ONE)
async def get_heartbeat(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id, heartbeat_id = _ids(request)
    async with request.app[POOL].acquire() as conn:
        row, recent = await crud.get_heartbeat(conn, user.id, webhook_id, heartbeat_id)
    counted = await pings.counted(request.app[REDIS], [heartbeat_id])
    answer = to_api(row, public_url(request), request.app[CLOCK].now(), counted.get(heartbeat_id, 0))
    pinged = [{**_ping(p), "body": p["body"]} for p in recent]
    return ok(heartbeat={**answer, "last_ping": _last(recent[0] if recent else None), "pings": pinged})


@routes.patch(ONE)
async def update_heartbeat(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id, heartbeat_id = _ids(request)
    wanted = heartbeat_input(await json_body(request))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_names(NAMES):
            row = await crud.update_heartbeat(
                conn,
                user.id,
                webhook_id,
                heartbeat_id,
                wanted,
                now,
                min_period=request.app[SETTINGS].min_heartbeat_period,
            )
    return ok(heartbeat=to_api(row, public_url(request), now))


@routes.delete(ONE)
async def delete_heartbeat(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id, heartbeat_id = _ids(request)
    async with request.app[POOL].acquire() as conn:
        await crud.delete_heartbeat(conn, request.app[REDIS], user.id, webhook_id, heartbeat_id)
    return ok(deleted=str(heartbeat_id))


@routes.post(ONE + "/pause")
async def pause_heartbeat(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id, heartbeat_id = _ids(request)
    async with request.app[POOL].acquire() as conn:
        row = await crud.pause_heartbeat(conn, user.id, webhook_id, heartbeat_id)
    return ok(heartbeat=to_api(row, public_url(request), request.app[CLOCK].now()))


@routes.post(ONE + "/resume")
async def resume_heartbeat(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id, heartbeat_id = _ids(request)
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        row = await crud.resume_heartbeat(conn, user.id, webhook_id, heartbeat_id, now)
    return ok(heartbeat=to_api(row, public_url(request), now))


def _last(row: Row | None) -> dict[str, Any] | None:
    return _ping(row) if row is not None else None


def _ping(row: Row) -> dict[str, Any]:
    return {
        "kind": row["kind"],
        "received_at": row["received_at"],
        "method": row["method"],
        "source_ip": row["source_ip"],
        "user_agent": row["user_agent"],
    }


def to_api(row: Row, public_url: str, now: datetime, counted: int = 0) -> dict[str, Any]:
    """The heartbeat as the API shows it (snake_case); ``counted``: pings not in ping_count yet."""
    period = row["period_seconds"]
    return {
        "id": str(row["id"]),
        "webhook_id": str(row["webhook_id"]),
        "name": row["name"],
        "ping_url": f"{public_url}/ping/{row['token']}",
        "period": format_duration(period) if period is not None else None,
        "period_seconds": period,
        "cron": row["cron"],
        "time_zone": row["time_zone"],
        "grace": format_duration(row["grace_seconds"]),
        "grace_seconds": row["grace_seconds"],
        "status": shown_status(State.of(row), now).value,
        "last_ping_at": row["last_ping_at"],
        "next_expected_at": row["expected_at"],
        "down_at": row["due_at"],
        "started_at": row["started_at"],
        "down_since": row["down_since"],
        "ping_count": row["ping_count"] + counted,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
