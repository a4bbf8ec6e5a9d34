"""The Maintenance page: maintenance windows (on one webhook or a whole team) and silences, the
ones active and to come, with create, end now and expire; silences expired in the last 7 days.

The forms are turned into the engine's ``WindowInput`` and ``SilenceInput``
(engine.maintenance.windows and .silences, as ``POST /api/maintenance-windows`` and ``POST
/api/silences`` do), and the engine's checks are the forms': a ValidationError is shown at the
field it names. Who may do what (an admin of the team makes and ends a window; a responder makes
and expires a silence; any member reads them) is the engine's rule too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from api.auth import current_user
from api.dashboard import views
from api.dashboard.field_errors import at_field
from api.dashboard.render import form, render, see_other
from api.dashboard.zones import day_and_time, from_local_input, viewer_zone
from api.state import CLOCK, POOL
from engine import db, webhooks
from engine.auth.users import get_user
from engine.errors import ValidationError
from engine.maintenance import holds, silences, windows
from engine.teams import Role
from engine.teams.members import list_teams
from engine.validate import UNSET

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
# The engine's field -> (the form's field, its label).
WINDOW_FIELDS = {
    "webhook_id": ("window_target", "For"),
    "team_id": ("window_target", "For"),
    "starts_at": ("window_starts", "From"),
    "ends_at": ("window_ends", "To"),
    "duration": ("window_duration", "For how long"),
    "reason": ("window_reason", "Reason"),
    "page_on_end": ("window_page_on_end", "Page on end"),
}
SILENCE_FIELDS = {
    "webhook_id": ("silence_target", "For"),
    "team_id": ("silence_target", "For"),
    "matchers": ("silence_matchers", "Matchers"),
    "starts_at": ("silence_starts", "From"),
    "ends_at": ("silence_ends", "To"),
    "duration": ("silence_duration", "For how long"),
    "comment": ("silence_comment", "Comment"),
}
# A matcher line as people write it in Alertmanager: name, operator, value (quotes optional).
_MATCHER = re.compile(r"\s*([^=!~\s]+)\s*(=~|!~|!=|=)\s*(.*?)\s*")
_MATCHER_ERROR = re.compile(r"matchers\[(\d+)\](?:\.\w+)?")
NOTICES = {
    "window": "Maintenance window saved: its webhooks page nobody while it is on.",
    "window-ended": "Maintenance ended: what it held pages now, as its “page on end” says.",
    "window-removed": "Maintenance window removed.",
    "silence": "Silence saved: alerts it matches raise incidents that page nobody while it is on.",
    "silence-expired": "Silence expired: the next alert it held pages.",
    "silence-removed": "Silence removed.",
}


def _target(raw: str) -> dict[str, object]:
    """The "For" select ("webhook:<id>" or "team:<id>") as the engine's webhook_id or team_id."""
    kind, _, value = raw.partition(":")
    if kind == "team":
        return {"team_id": value}
    if kind == "webhook":
        return {"webhook_id": value}
    return {}


def _period(given: Mapping[str, str], prefix: str, tz: ZoneInfo) -> dict[str, object]:
    """ "For 2 hours" (a duration) or from-to (datetime-local fields read in the viewer's zone)."""
    period: dict[str, object] = {}
    duration = given.get(f"{prefix}_duration", "").strip()
    if duration:
        period["duration"] = duration
    for field, name in (("starts", "starts_at"), ("ends", "ends_at")):
        raw = given.get(f"{prefix}_{field}", "").strip()
        if raw:
            period[name] = from_local_input(raw, tz) or raw
    return period


def window_input(given: Mapping[str, str], tz: ZoneInfo) -> windows.WindowInput:
    return windows.WindowInput(
        **_target(given.get("window_target", "")),
        **_period(given, "window", tz),
        reason=given.get("window_reason", ""),
        page_on_end=given.get("window_page_on_end") == "on",
    )


def matchers_of(text: str) -> list[object]:
    """One matcher a line (``severity="critical"``, ``alertname=~"Disk.*"``); a line that is not
    one is passed on as written, for the engine to refuse with its own words."""
    found: list[object] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _MATCHER.fullmatch(line)
        if match is None:
            found.append(line.strip())
            continue
        name, operator, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found.append(
            {"name": name, "value": value, "is_regex": "~" in operator, "is_equal": "!" not in operator}
        )
    return found


def silence_input(given: Mapping[str, str], tz: ZoneInfo) -> silences.SilenceInput:
    matchers = given.get("silence_matchers", "")
    return silences.SilenceInput(
        **_target(given.get("silence_target", "")),
        **_period(given, "silence", tz),
        matchers=matchers_of(matchers) if matchers.strip() else UNSET,
        comment=given.get("silence_comment", ""),
    )


def silence_error(exc: ValidationError) -> tuple[str, str]:
    """A matcher's error names its line ("Line 2: ..."), as the form numbers them."""
    line = _MATCHER_ERROR.match(exc.field or "")
    if line is not None:
        rest = (
            exc.message[len(line.group(0)) :] if exc.message.startswith(line.group(0)) else ": " + exc.message
        )
        return "silence_matchers", f"Line {int(line.group(1)) + 1}{rest}"
    return at_field(exc, SILENCE_FIELDS)


def _when(moment: datetime, tz: ZoneInfo) -> str:
    return day_and_time(moment, tz)


async def incident_held(
    conn: db.Connection, user_id: uuid.UUID, incident: Any, now: datetime, tz: ZoneInfo
) -> str:
    """What holds a triggered incident's pages now (its window on, or its silence), in words; ""
    if nothing does. The incident's own columns say which (engine.maintenance)."""
    if incident["status"] != "triggered":
        return ""
    if incident["maintenance_window_id"] is not None:
        window = await windows.get_window(conn, user_id, incident["maintenance_window_id"])
        if windows.status(window, now) is windows.WindowStatus.ACTIVE:
            return f"Pages held: maintenance until {_when(window['ends_at'], tz)}, reason: {window['reason']}"
    if incident["silence_id"] is not None:
        silence = await silences.get_silence(conn, user_id, incident["silence_id"])
        if silence["starts_at"] <= now < silence["ends_at"]:
            return (
                f"Pages held: silenced until {_when(silence['ends_at'], tz)}, comment: {silence['comment']}"
            )
    return ""


async def webhook_quiet(
    conn: db.Connection, user_id: uuid.UUID, webhook: Any, now: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """A webhook page's line about what quiets it now: the maintenance it is in (until when) and
    how many silences are on for it (on it, or on its whole team)."""
    until = (await holds.until_of(conn, [webhook["id"]], now)).get(webhook["id"])
    on = [
        s
        for s in await silences.list_silences(conn, user_id, now)
        if s["starts_at"] <= now < s["ends_at"]
        and (
            s["webhook_id"] == webhook["id"]
            or (s["webhook_id"] is None and s["team_id"] == webhook["team_id"])
        )
    ]
    return {"maintenance_until": _when(until, tz) if until else "", "silences": len(on)}


async def _people(conn: db.Connection, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    people: dict[uuid.UUID, str] = {}
    for person_id in ids:
        someone = await get_user(conn, person_id)
        if someone is not None:
            people[person_id] = someone.name or someone.email
    return people


async def _page(
    request: web.Request,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    user = current_user(request)
    now = request.app[CLOCK].now()
    tz, _ = viewer_zone(request)
    async with request.app[POOL].acquire() as conn:
        found_windows = await windows.list_windows(conn, user.id, now)
        found_silences = await silences.list_silences(conn, user.id, now)
        hooks = await webhooks.list_webhooks(conn, user.id, limit=200)
        teams = await list_teams(conn, user.id)
        people = await _people(
            conn, {r["created_by"] for r in [*found_windows, *found_silences] if r["created_by"] is not None}
        )
    roles = {t["id"]: Role(t["role"]) for t in teams}
    team_names = {t["id"]: views.team_name(t) for t in teams}
    hook_names = {h["id"]: h["name"] for h in hooks}

    def covers(row: Any) -> str:
        if row["webhook_id"] is not None:
            return f"Webhook {hook_names.get(row['webhook_id'], 'deleted')}"
        return f"Every webhook of {team_names.get(row['team_id'], 'a team')}"

    def targets(minimum: Role) -> list[tuple[str, str]]:
        able = [t for t in teams if Role(t["role"]).at_least(minimum)]
        return [
            ("webhook:" + str(h["id"]), f"Webhook {h['name']}")
            for h in hooks
            if roles.get(h["team_id"], Role.VIEWER).at_least(minimum)
        ] + [("team:" + str(t["id"]), f"Every webhook of {views.team_name(t)}") for t in able]

    shown_windows = []
    for w in found_windows:
        state = windows.status(w, now)
        shown_windows.append(
            {
                "id": str(w["id"]),
                "status": state.value,
                "status_label": {"active": "On now", "scheduled": "Upcoming", "ended": "Ended"}[state.value],
                "covers": covers(w),
                "from": _when(w["starts_at"], tz),
                "to": _when(w["ended_at"] or w["ends_at"], tz),
                "reason": w["reason"],
                "page_on_end": "pages what it held when it ends"
                if w["page_on_end"]
                else "pages nothing when it ends",
                "creator": people.get(w["created_by"], "someone") if w["created_by"] else "someone",
                "can_end": state is not windows.WindowStatus.ENDED
                and roles.get(w["team_id"], Role.VIEWER).at_least(Role.ADMIN),
            }
        )
    shown_silences = []
    for s in found_silences:
        started, ended = s["starts_at"] <= now, s["ends_at"] <= now
        shown_silences.append(
            {
                "id": str(s["id"]),
                "status": "expired" if ended else "active" if started else "pending",
                "status_label": "Expired" if ended else "On now" if started else "Upcoming",
                "covers": covers(s),
                "matchers": [
                    f'{m.name}{m.operator}"{m.value}"' for m in map(silences.matcher_of, s["matchers"])
                ],
                "from": _when(s["starts_at"], tz),
                "to": _when(s["ends_at"], tz),
                "comment": s["comment"],
                "creator": people.get(s["created_by"], "someone") if s["created_by"] else "someone",
                "can_expire": not ended and roles.get(s["team_id"], Role.VIEWER).at_least(Role.RESPONDER),
            }
        )
    context = {
        "section": "maintenance",
        "zone": str(tz),
        "windows": [w for w in shown_windows if w["status"] != "ended"],
        "silences": [s for s in shown_silences if s["status"] != "expired"],
        "expired": [s for s in shown_silences if s["status"] == "expired"],
        "window_targets": targets(Role.ADMIN),
        "silence_targets": targets(Role.RESPONDER),
        "values": values or {"window_duration": "2h", "silence_duration": "2h", "window_page_on_end": "on"},
        "errors": errors or {},
        "notice": NOTICES.get(request.query.get("done", ""), ""),
    }
    return render(request, "maintenance.html", context, status=status)


@routes.get("/maintenance", name="dashboard.maintenance")
async def maintenance_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/maintenance/windows", name="dashboard.maintenance_windows")
async def create_window(request: web.Request) -> web.Response:
    """POST /api/maintenance-windows from the form (an admin of the team may)."""
    user = current_user(request)
    given = await form(request)
    tz, _ = viewer_zone(request)
    try:
        async with request.app[POOL].acquire() as conn:
            await windows.create_window(conn, user.id, window_input(given, tz), request.app[CLOCK].now())
    except ValidationError as exc:
        name, message = at_field(exc, WINDOW_FIELDS)
        return await _page(request, given, {name or "window": message}, status=400)
    return see_other("/maintenance?done=window#windows")


@routes.post(f"/maintenance/windows/{ID}/end", name="dashboard.maintenance_window_end")
async def end_window(request: web.Request) -> web.Response:
    """DELETE /api/maintenance-windows/<id>: an active window ends now, one to come is removed."""
    user = current_user(request)
    window_id = windows.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        ended = await windows.delete_window(conn, user.id, window_id, request.app[CLOCK].now())
    return see_other(f"/maintenance?done={'window-ended' if ended else 'window-removed'}#windows")


@routes.post("/maintenance/silences", name="dashboard.silences")
async def create_silence(request: web.Request) -> web.Response:
    """POST /api/silences from the form (a responder of the team may)."""
    user = current_user(request)
    given = await form(request)
    tz, _ = viewer_zone(request)
    try:
        async with request.app[POOL].acquire() as conn:
            await silences.create_silence(conn, user.id, silence_input(given, tz), request.app[CLOCK].now())
    except ValidationError as exc:
        name, message = silence_error(exc)
        return await _page(request, given, {name or "silence": message}, status=400)
    return see_other("/maintenance?done=silence#silences")


@routes.post(f"/maintenance/silences/{ID}/expire", name="dashboard.silence_expire")
async def expire_silence(request: web.Request) -> web.Response:
    """DELETE /api/silences/<id>: an active silence expires now, one to come is removed."""
    user = current_user(request)
    silence_id = silences.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        expired = await silences.expire_silence(conn, user.id, silence_id, request.app[CLOCK].now())
    return see_other(f"/maintenance?done={'silence-expired' if expired else 'silence-removed'}#silences")
