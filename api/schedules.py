"""Handlers for /api/schedules: schedules, their overrides, who is on call, the shifts.

Rotations come inline in a schedule's body as an ordered list (a later one is a layer above the
earlier ones); the rules live in engine.oncall.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.feeds import schedule_feed_url
from api.inputs import fields, json_body, query, wire_paths
from api.responses import ok
from api.state import CLOCK, POOL
from engine import limits
from engine.errors import ValidationError
from engine.oncall import answers, crud, definitions, overrides
from engine.oncall.definitions import ActiveHoursInput, OverrideInput, RotationInput, ScheduleInput

routes = web.RouteTableDef()

# Each body's fields: wire name -> the engine's (engine.oncall.definitions' inputs).
SCHEDULE_NAMES = {
    "teamId": "team_id",
    "name": "name",
    "description": "description",
    "timeZone": "time_zone",
    "rotations": "rotations",
}
ROTATION_NAMES = {
    "name": "name",
    "participants": "participants",
    "shiftLength": "shift_length",
    "shiftUnit": "shift_unit",
    "start": "start",
    "activeHours": "active_hours",
}
ACTIVE_HOURS_NAMES = {"weekdays": "weekdays", "start": "start", "end": "end"}
OVERRIDE_NAMES = {"userId": "user_id", "replacesUserId": "replaces_user_id", "start": "start", "end": "end"}
# Every level's names, for the paths of the engine's errors (rotations[0].shift_length).
ALL_NAMES = {**SCHEDULE_NAMES, **ROTATION_NAMES, **ACTIVE_HOURS_NAMES, **OVERRIDE_NAMES}
DEFAULT_SHIFTS_RANGE = timedelta(days=7)


@contextmanager
def _inside(path: str) -> Iterator[None]:
    """An error about a nested object's field names it by its path in the body."""
    try:
        yield
    except ValidationError as exc:
        if exc.field is None:  # the object itself is not an object
            raise ValidationError(f"{path} must be an object", field=path) from None
        inner, exc.field = exc.field, f"{path}.{exc.field}"
        exc.message = exc.message.replace(inner, exc.field, 1)
        exc.args = (exc.message,)
        raise


def _rotation(item: object, path: str) -> object:
    if not isinstance(item, Mapping):
        return item  # the engine says what a rotation must be
    with _inside(path):
        given = fields(item, ROTATION_NAMES, text=("name",))
    hours = given.get("active_hours")
    if isinstance(hours, Mapping):
        with _inside(f"{path}.activeHours"):
            given["active_hours"] = ActiveHoursInput(**fields(hours, ACTIVE_HOURS_NAMES))
    return RotationInput(**given)


def schedule_input(body: object) -> ScheduleInput:
    given = fields(body, SCHEDULE_NAMES, text=("name", "description"))
    rotations = given.get("rotations")
    if isinstance(rotations, list):
        given["rotations"] = [_rotation(item, f"rotations[{i}]") for i, item in enumerate(rotations)]
    return ScheduleInput(**given)


def _instant(params: Mapping[str, str], name: str, default: datetime) -> datetime:
    raw = params.get(name)
    return default if raw is None else definitions.instant(raw, name)


@routes.get("/api/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    user = current_user(request)
    limit, offset = limits.page(query(request, "limit", "offset"), default=limits.MAX_PAGE)
    async with request.app[POOL].acquire() as conn:
        records, total = await crud.list_schedules(conn, user.id, limit=limit, offset=offset)
    return ok(schedules=[schedule_to_api(request, r) for r in records], total=total)


@routes.post("/api/schedules")
async def create_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = schedule_input(await json_body(request))
    async with request.app[POOL].acquire() as conn:
        with wire_paths(ALL_NAMES):
            record = await crud.create_schedule(conn, user.id, wanted)
    return ok(http_status=201, schedule=schedule_to_api(request, record))


@routes.get("/api/schedules/{id}")
async def get_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await crud.get_schedule(conn, user.id, schedule_id)
    return ok(schedule=schedule_to_api(request, record))


@routes.patch("/api/schedules/{id}")
async def update_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    wanted = schedule_input(await json_body(request))
    async with request.app[POOL].acquire() as conn:
        with wire_paths(ALL_NAMES):
            record = await crud.update_schedule(conn, user.id, schedule_id, wanted)
    return ok(schedule=schedule_to_api(request, record))


@routes.delete("/api/schedules/{id}")
async def delete_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await crud.delete_schedule(conn, user.id, schedule_id)
    return ok(deleted=str(schedule_id))


@routes.get("/api/schedules/{id}/overrides")
async def list_overrides(request: web.Request) -> web.Response:
    """The overrides that reach past ``from`` (default now) and, with ``to``, start before it."""
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    params = query(request, "from", "to")
    start = _instant(params, "from", request.app[CLOCK].now())
    end = definitions.instant(params["to"], "to") if "to" in params else None
    async with request.app[POOL].acquire() as conn:
        records = await overrides.list_overrides(conn, user.id, schedule_id, start=start, end=end)
    return ok(overrides=[override_to_api(r) for r in records], total=len(records))


@routes.post("/api/schedules/{id}/overrides")
async def create_override(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    wanted = OverrideInput(**fields(await json_body(request), OVERRIDE_NAMES))
    async with request.app[POOL].acquire() as conn:
        with wire_paths(OVERRIDE_NAMES):
            record = await overrides.create_override(
                conn, user.id, schedule_id, wanted, request.app[CLOCK].now()
            )
    return ok(http_status=201, override=override_to_api(record))


@routes.delete("/api/schedules/{id}/overrides/{override_id}")
async def delete_override(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    override_id = overrides.parse_id(request.match_info["override_id"])
    async with request.app[POOL].acquire() as conn:
        await overrides.delete_override(conn, user.id, schedule_id, override_id)
    return ok(deleted=str(override_id))


@routes.get("/api/schedules/{id}/on-call")
async def on_call(request: web.Request) -> web.Response:
    """Who is on call at ``at`` (default now), and until when."""
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    at = _instant(query(request, "at"), "at", request.app[CLOCK].now())
    async with request.app[POOL].acquire() as conn:
        found = await answers.on_call(conn, user.id, schedule_id, at)
    return ok(
        schedule_id=str(schedule_id),
        at=at,
        on_call=[{"user": person_to_api(o.person), "until": o.until} for o in found],
    )


@routes.get("/api/schedules/{id}/shifts")
async def shifts(request: web.Request) -> web.Response:
    """The final shifts from ``from`` (default now) to ``to`` (default 7 days on; at most 90)."""
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    params = query(request, "from", "to")
    start = _instant(params, "from", request.app[CLOCK].now())
    end = _instant(params, "to", start + DEFAULT_SHIFTS_RANGE)
    async with request.app[POOL].acquire() as conn:
        found = await answers.shifts(conn, user.id, schedule_id, start, end)
    answer: dict[str, Any] = {"schedule_id": str(schedule_id), "from": start, "to": end}
    return ok(**answer, shifts=[shift_to_api(s) for s in found], total=len(found))


def schedule_to_api(request: web.Request, record: crud.ScheduleRecord) -> dict[str, Any]:
    """A schedule as its team's members see it (``role``: the caller's in the team)."""
    return {
        "id": str(record.id),
        "team_id": str(record.team_id),
        "name": record.name,
        "description": record.description,
        "time_zone": record.time_zone,
        "role": record.role.value,
        "rotations": [rotation_to_api(r) for r in record.rotations],
        "ical_url": schedule_feed_url(request, record.id, record.ical_version),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def rotation_to_api(record: crud.RotationRecord) -> dict[str, Any]:
    rotation, hours = record.rotation, record.rotation.active_hours
    return {
        "id": str(record.id),
        "name": record.name,
        "participants": list(rotation.participants),
        "shift_length": rotation.shift_length,
        "shift_unit": rotation.shift_unit.value,
        "start": definitions.local_datetime_text(rotation.start),
        "active_hours": None
        if hours is None
        else {
            "weekdays": sorted(hours.weekdays),
            "start": definitions.local_time_text(hours.start),
            "end": definitions.local_time_text(hours.end),
        },
    }


def override_to_api(record: asyncpg.Record) -> dict[str, Any]:
    replaces = record["replaces_user_id"]
    return {
        "id": str(record["id"]),
        "schedule_id": str(record["schedule_id"]),
        "user_id": str(record["user_id"]),
        "replaces_user_id": None if replaces is None else str(replaces),
        "start": record["start_at"],
        "end": record["end_at"],
        "created_by": None if record["created_by"] is None else str(record["created_by"]),
        "created_at": record["created_at"],
    }


def person_to_api(person: answers.Person) -> dict[str, Any]:
    return {"id": str(person.id), "email": person.email, "name": person.name}


def shift_to_api(shift: answers.ShiftAnswer) -> dict[str, Any]:
    return {
        "user": person_to_api(shift.person),
        "start": shift.start,
        "end": shift.end,
        "sources": [{"type": s.kind, "id": str(s.id), "name": s.name} for s in shift.sources],
    }
