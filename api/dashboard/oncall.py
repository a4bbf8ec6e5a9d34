"""The On-call page: each schedule with who is on call now and the next handoff, a week (or two)
of its shifts as a timeline, an override form; and the new-schedule form (a schedule with its
first rotation).

Everything is asked of the engine as ``/api/schedules`` asks it (engine.oncall.crud, answers,
overrides); the forms become the engine's inputs (ScheduleInput, RotationInput, OverrideInput)
and its ValidationErrors are shown at the fields they name. Times are shown, and typed, in the
viewer's time zone (api.dashboard.zones), except a rotation's first handoff: that is a wall time
in the schedule's own zone, as the engine defines it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.dashboard import timeline
from api.dashboard.field_errors import at_field, number
from api.dashboard.render import form, form_lists, render, see_other
from api.dashboard.zones import day_and_time, day_text, from_local_input, local_input, until_text, viewer_zone
from api.state import CLOCK, POOL
from engine import db
from engine.errors import NotFound, ValidationError
from engine.oncall import answers, crud, definitions, overrides
from engine.oncall.definitions import UNITS, ActiveHoursInput, OverrideInput, RotationInput, ScheduleInput
from engine.oncall.localtime import to_wall
from engine.oncall.model import ActiveHours
from engine.oncall.policies import list_policies
from engine.oncall.validation import _zone_names
from engine.teams import Role
from engine.teams.members import list_members, list_teams
from engine.validate import UNSET

routes = web.RouteTableDef()
MAX_SCHEDULES = 50  # on one page; more is a sign of needing a filter, not a longer page
NEXT_HORIZON = timedelta(days=14)  # how far ahead "then: ..." looks for the next person
SCHEDULE_FIELDS = {
    "name": ("name", "Name"),
    "description": ("description", "Description"),
    "time_zone": ("time_zone", "Time zone"),
    "team_id": ("team", "Team"),
    "rotations": ("participants", "Rotation"),
}
WEEKDAYS = ((0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun"))


def rotation_fields(index: int) -> dict[str, tuple[str, str]]:
    """The engine's paths of rotation ``index`` -> the rotation form's fields."""
    at = f"rotations[{index}]"
    return {
        at: ("participants", "Rotation"),
        f"{at}.name": ("rotation_name", "Rotation name"),
        f"{at}.participants": ("participants", "People"),
        f"{at}.shift_length": ("shift_length", "Shift length"),
        f"{at}.shift_unit": ("shift_unit", "Shift unit"),
        f"{at}.start": ("start", "First handoff"),
        f"{at}.active_hours": ("active_days", "Active hours"),
        f"{at}.active_hours.weekdays": ("active_days", "Days"),
        f"{at}.active_hours.start": ("active_start", "From"),
        f"{at}.active_hours.end": ("active_end", "Until"),
    }


OVERRIDE_FIELDS = {
    "user_id": ("user", "Person"),
    "start": ("start", "From"),
    "end": ("end", "Until"),
}
UNIT_LABELS = {"hours": "Hours", "days": "Days", "weeks": "Weeks"}


def hours_text(hours: ActiveHours | None) -> str:
    """ "Mon, Tue, Wed 09:00 to 17:00" (the days a window starts on)."""
    if hours is None:
        return ""
    days = ", ".join(name for number, name in WEEKDAYS if number in hours.weekdays)
    return f"{days} {hours.start:%H:%M} to {hours.end:%H:%M}"


def every(length: int, unit: str) -> str:
    """ "every week", "every 12 hours"."""
    return f"every {unit.removesuffix('s')}" if length == 1 else f"every {length} {unit}"


def zones() -> list[str]:
    return sorted(_zone_names())


def _range(request: web.Request, tz: ZoneInfo, now: datetime) -> timeline.Range:
    days = 14 if request.query.get("days") == "14" else 7
    try:
        first = date.fromisoformat(request.query.get("from", ""))
    except ValueError:
        first = to_wall(now, tz).date()
    return timeline.week_of(first, days, tz)


async def _members(conn: db.Connection, user_id: uuid.UUID, team_id: uuid.UUID) -> list[dict[str, str]]:
    return [
        {"id": str(m["user_id"]), "name": m["name"] or m["email"], "email": m["email"], "role": m["role"]}
        for m in await list_members(conn, user_id, team_id)
    ]


async def _card(
    conn: db.Connection,
    request: web.Request,
    record: crud.ScheduleRecord,
    rng: timeline.Range,
    now: datetime,
    team_names: dict[uuid.UUID, str],
    team_members: dict[uuid.UUID, list[dict[str, str]]],
) -> dict[str, Any]:
    user = current_user(request)
    on_call = await answers.on_call(conn, user.id, record.id, now)
    upcoming = await answers.shifts(conn, user.id, record.id, now, now + NEXT_HORIZON)
    final = await answers.shifts(conn, user.id, record.id, rng.start, rng.end)
    listed = await overrides.list_overrides(conn, user.id, record.id, start=rng.start, end=rng.end)
    ids = {uuid.UUID(u) for r in record.rotations for u in r.rotation.participants}
    ids |= {o["user_id"] for o in listed}
    people = await answers.people(conn, ids)
    if record.team_id not in team_members:  # one query per team, not per schedule
        team_members[record.team_id] = await _members(conn, user.id, record.team_id)
    members = team_members[record.team_id]
    now_card = None
    if on_call:
        current = on_call[0]
        after = upcoming[1] if len(upcoming) > 1 and upcoming[0].end == upcoming[1].start else None
        now_card = {
            "who": timeline.person_name(current.person),
            "until": day_and_time(current.until, rng.tz) if current.until else "",
            "until_in": until_text(current.until, now) if current.until else "",
            "next": timeline.person_name(after.person) if after else "",
            "override": bool(upcoming) and any(s.kind == "override" for s in upcoming[0].sources),
        }
    elif upcoming:
        now_card = {
            "who": "",
            "starts": day_and_time(upcoming[0].start, rng.tz),
            "next": timeline.person_name(upcoming[0].person),
        }
    role = record.role
    may_override = role.at_least(Role.RESPONDER)
    return {
        "id": str(record.id),
        "name": record.name,
        "description": record.description,
        "time_zone": record.time_zone,
        "team": team_names.get(record.team_id, ""),
        "now": now_card,
        "lanes": timeline.lanes(rng, record, final, [dict(o) for o in listed], people),
        "shifts": timeline.shift_rows(rng, record, final),
        "rotations": [
            {
                "name": r.name or f"Rotation {i + 1}",
                "people": [timeline.person_name(people.get(uuid.UUID(u))) for u in r.rotation.participants],
                "every": every(r.rotation.shift_length, r.rotation.shift_unit.value),
                "from": r.rotation.start.strftime("%a %d %b %Y %H:%M"),
                "hours": hours_text(r.rotation.active_hours),
            }
            for i, r in enumerate(record.rotations)
        ],
        "overrides": [
            {
                "id": str(o["id"]),
                "who": timeline.person_name(people.get(o["user_id"])),
                "start": day_and_time(o["start_at"], rng.tz),
                "end": day_and_time(o["end_at"], rng.tz),
                "may_delete": role.at_least(Role.ADMIN) or o["user_id"] == user.id,
            }
            for o in listed
        ],
        "may_override": may_override,
        "may_edit": role.at_least(Role.ADMIN),
        # A responder overrides only for themselves (engine.oncall.overrides): offer only that.
        "people": members if role.at_least(Role.ADMIN) else [m for m in members if m["id"] == str(user.id)],
    }


async def _page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    failed: str = "",
    status: int = 200,
) -> web.Response:
    """The On-call page; ``failed``: the schedule whose override form ``errors`` belong to."""
    user = current_user(request)
    now = request.app[CLOCK].now()
    tz, zone_source = viewer_zone(request)
    rng = _range(request, tz, now)
    async with request.app[POOL].acquire() as conn:
        teams = await list_teams(conn, user.id)
        team_names = {t["id"]: "Personal" if t["personal"] else t["name"] for t in teams}
        records, total = await crud.list_schedules(conn, user.id, limit=MAX_SCHEDULES, offset=0)
        team_members: dict[uuid.UUID, list[dict[str, str]]] = {}
        cards = [await _card(conn, request, r, rng, now, team_names, team_members) for r in records]
        found = await list_policies(conn, user.id)
    start_default = now.replace(second=0, microsecond=0)
    defaults = {
        "start": local_input(start_default, tz),
        "end": local_input(start_default + timedelta(hours=8), tz),
    }
    previous = rng.first_day - timedelta(days=rng.days)
    following = rng.first_day + timedelta(days=rng.days)
    days_query = "&days=14" if rng.days == 14 else ""
    context = {
        "section": "oncall",
        "schedules": cards,
        "total": total,
        "zone": str(tz),
        "zone_source": zone_source,
        "zones": zones(),
        "days": rng.days,
        "marks": timeline.day_marks(rng, now),
        "now_x": f"{rng.x(now)}%" if rng.start <= now < rng.end else "",
        "range_text": f"{day_text(rng.first_day)} to {day_text(following - timedelta(days=1))}",
        "previous": f"/on-call?from={previous.isoformat()}{days_query}",
        "following": f"/on-call?from={following.isoformat()}{days_query}",
        "this_week": f"/on-call?days={rng.days}",
        "other_length": f"/on-call?from={rng.first_day.isoformat()}&days={7 if rng.days == 14 else 14}",
        "from_day": rng.first_day.isoformat(),
        "errors": errors or {},
        "values": {**defaults, **(values or {})},
        "failed": failed,
        "policies": [
            {
                "id": str(p.id),
                "name": p.name,
                "steps": len(p.steps),
                "repeat": p.repeat,
                "team": team_names.get(p.team_id, ""),
            }
            for p in found
        ],
        "may_create": any(Role(t["role"]).at_least(Role.ADMIN) for t in teams),
    }
    return render(request, "oncall.html", context, status=status)


@routes.get("/on-call", name="dashboard.oncall")
async def oncall_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/on-call/schedules/{id}/overrides", name="dashboard.override_create")
async def create_override(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    given = await form(request)
    tz, _ = viewer_zone(request)
    wanted = OverrideInput(
        user_id=given.get("user") or UNSET,
        start=_instant_field(given.get("start", ""), tz),
        end=_instant_field(given.get("end", ""), tz),
    )
    try:
        async with request.app[POOL].acquire() as conn:
            await overrides.create_override(conn, user.id, schedule_id, wanted, request.app[CLOCK].now())
    except ValidationError as exc:
        name, message = at_field(exc, OVERRIDE_FIELDS)
        return await _page(request, errors={name: message}, values=given, failed=str(schedule_id), status=400)
    return see_other(_back(given))


def _instant_field(raw: str, tz: ZoneInfo) -> object:
    if not raw.strip():
        return UNSET  # the engine: "start is required"
    return from_local_input(raw, tz) or raw


def _back(given: dict[str, str]) -> str:
    """Back to the week the form was on."""
    try:
        day = date.fromisoformat(given.get("from_day", ""))
    except ValueError:
        return "/on-call"
    return f"/on-call?from={day.isoformat()}" + ("&days=14" if given.get("days") == "14" else "")


@routes.post("/on-call/schedules/{id}/overrides/{override_id}/delete", name="dashboard.override_delete")
async def delete_override(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    override_id = overrides.parse_id(request.match_info["override_id"])
    given = await form(request)
    async with request.app[POOL].acquire() as conn:
        await overrides.delete_override(conn, user.id, schedule_id, override_id)
    return see_other(_back(given))


def default_team(teams: list[asyncpg.Record]) -> asyncpg.Record | None:
    """The team a form starts on: the first shared one (where the people are), else the personal."""
    return next((t for t in teams if not t["personal"]), teams[0] if teams else None)


async def _admin_teams(conn: db.Connection, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return [t for t in await list_teams(conn, user_id) if Role(t["role"]).at_least(Role.ADMIN)]


async def _schedule_form(
    request: web.Request, values: dict[str, Any], errors: dict[str, str], *, status: int = 200
) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        teams = await _admin_teams(conn, user.id)
        chosen = next((t for t in teams if str(t["id"]) == values.get("team")), default_team(teams))
        members = await _members(conn, user.id, chosen["id"]) if chosen else []
    context = {
        "section": "oncall",
        "values": values,
        "errors": errors,
        "teams": [{"id": str(t["id"]), "name": "Personal" if t["personal"] else t["name"]} for t in teams],
        "team": str(chosen["id"]) if chosen else "",
        "members": members,
        "zones": zones(),
        "units": [(u, UNIT_LABELS[u]) for u in UNITS],
        "weekdays": WEEKDAYS,
        "rotation_legend": "Rotation: people take turns, one shift each",
    }
    return render(request, "schedule_new.html", context, status=status)


@routes.get("/on-call/new-schedule", name="dashboard.schedule_new")
async def new_schedule(request: web.Request) -> web.Response:
    tz, _ = viewer_zone(request)
    now = request.app[CLOCK].now()
    first = to_wall(now, tz).replace(hour=9, minute=0, second=0, microsecond=0)
    values: dict[str, Any] = {
        "team": request.query.get("team", ""),
        "time_zone": str(tz),
        "shift_length": "1",
        "shift_unit": "weeks",
        "start": first.strftime("%Y-%m-%dT%H:%M"),
        "participant": [],
        "active_day": [],
    }
    return await _schedule_form(request, values, {})


@routes.post("/on-call/new-schedule", name="dashboard.schedule_create")
async def create_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    given = await form(request)
    lists = await form_lists(request, "participant", "active_day")
    values: dict[str, Any] = {**given, **lists}
    if given.get("change_team"):  # the team chooser: the same form for another team's people
        return await _schedule_form(request, {**values, "participant": []}, {})
    rotation = rotation_input(given, lists)
    wanted = ScheduleInput(
        team_id=given.get("team") or UNSET,
        name=given.get("name", ""),
        description=given.get("description") or None,
        time_zone=given.get("time_zone") or UNSET,
        rotations=[rotation],
    )
    try:
        async with request.app[POOL].acquire() as conn:
            await crud.create_schedule(conn, user.id, wanted)
    except ValidationError as exc:
        name, message = at_field(exc, {**SCHEDULE_FIELDS, **rotation_fields(0)})
        return await _schedule_form(request, values, {name: message}, status=400)
    return see_other("/on-call")


def rotation_input(given: dict[str, str], lists: dict[str, list[str]]) -> RotationInput:
    """The rotation form as the engine's input; what is missing is left for the engine to name."""
    days, begin, end = lists.get("active_day", []), given.get("active_start", ""), given.get("active_end", "")
    hours: object = UNSET
    if days or begin or end:
        hours = ActiveHoursInput(
            weekdays=[int(d) for d in days if d.isdigit()], start=begin or UNSET, end=end or UNSET
        )
    return RotationInput(
        name=given.get("rotation_name") or None,
        participants=lists.get("participant", []),
        shift_length=number(given.get("shift_length", "")),
        shift_unit=given.get("shift_unit") or UNSET,
        start=given.get("start") or UNSET,
        active_hours=hours,
    )


def stored_input(item: crud.RotationRecord) -> RotationInput:
    """A stored rotation as the input that writes it again (as GET /api/schedules answers it)."""
    rotation, hours = item.rotation, item.rotation.active_hours
    return RotationInput(
        name=item.name or None,
        participants=list(rotation.participants),
        shift_length=rotation.shift_length,
        shift_unit=rotation.shift_unit.value,
        start=definitions.local_datetime_text(rotation.start),
        active_hours=None
        if hours is None
        else ActiveHoursInput(
            weekdays=sorted(hours.weekdays),
            start=definitions.local_time_text(hours.start),
            end=definitions.local_time_text(hours.end),
        ),
    )


async def _layer_form(
    request: web.Request,
    record: crud.ScheduleRecord,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    status: int = 200,
) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        members = await _members(conn, user.id, record.team_id)
    context = {
        "section": "oncall",
        "schedule": {"id": str(record.id), "name": record.name, "time_zone": record.time_zone},
        "layers": [r.name or f"Rotation {i + 1}" for i, r in enumerate(record.rotations)],
        "values": values,
        "errors": errors,
        "members": members,
        "units": [(u, UNIT_LABELS[u]) for u in UNITS],
        "weekdays": WEEKDAYS,
        "rotation_legend": f"Layer {len(record.rotations) + 1}: on top of the layers below",
    }
    return render(request, "layer_new.html", context, status=status)


@routes.get("/on-call/schedules/{id}/layers", name="dashboard.layer_new")
async def new_layer(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await crud.get_schedule(conn, user.id, schedule_id)
    first = to_wall(request.app[CLOCK].now(), ZoneInfo(record.time_zone))
    values = {
        "shift_length": "1",
        "shift_unit": "weeks",
        "start": first.replace(hour=9, minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M"),
        "participant": [],
        "active_day": [],
    }
    return await _layer_form(request, record, values, {})


@routes.post("/on-call/schedules/{id}/layers", name="dashboard.layer_create")
async def create_layer(request: web.Request) -> web.Response:
    """A rotation on top of the others: the schedule's rotations written again with it last."""
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    given = await form(request)
    lists = await form_lists(request, "participant", "active_day")
    async with request.app[POOL].acquire() as conn:
        record = await crud.get_schedule(conn, user.id, schedule_id)
        rotations = [*(stored_input(r) for r in record.rotations), rotation_input(given, lists)]
        try:
            await crud.update_schedule(conn, user.id, schedule_id, ScheduleInput(rotations=rotations))
        except ValidationError as exc:
            name, message = at_field(exc, rotation_fields(len(record.rotations)))
            return await _layer_form(request, record, {**given, **lists}, {name: message}, status=400)
    return see_other("/on-call")


@routes.post("/on-call/schedules/{id}/layers/{index}/delete", name="dashboard.layer_delete")
async def delete_layer(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    raw = request.match_info["index"]
    confirmed = (await form(request)).get("confirm") == "1"
    async with request.app[POOL].acquire() as conn:
        record = await crud.get_schedule(conn, user.id, schedule_id)
        if not raw.isdigit() or int(raw) >= len(record.rotations):
            raise NotFound("no such layer in this schedule", code="ROTATION_NOT_FOUND")
        index = int(raw)
        if not confirmed:  # the button asks first, on a page that names the layer
            layer = timeline.layer_names(record)[record.rotations[index].id]
            context = {
                "section": "oncall",
                "schedule": {"id": str(record.id), "name": record.name},
                "layer": layer,
                "index": index,
            }
            return render(request, "layer_delete.html", context)
        kept = [stored_input(r) for i, r in enumerate(record.rotations) if i != index]
        await crud.update_schedule(conn, user.id, schedule_id, ScheduleInput(rotations=kept))
    return see_other("/on-call")


@routes.get("/on-call/schedules/{id}/delete", name="dashboard.schedule_delete_confirm")
async def confirm_delete_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await crud.get_schedule(conn, user.id, schedule_id)
    context = {"section": "oncall", "schedule": {"id": str(record.id), "name": record.name}}
    return render(request, "schedule_delete.html", context)


@routes.post("/on-call/schedules/{id}/delete", name="dashboard.schedule_delete")
async def delete_schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await crud.delete_schedule(conn, user.id, schedule_id)
    return see_other("/on-call")
