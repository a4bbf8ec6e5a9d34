"""Handlers for /api/me/quiet-hours: the caller's own quiet hours (engine.oncall.quiet_hours).
Requests take camelCase (timeZone, minSeverity), answers snake_case, as every route of the API."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_names
from api.responses import ok
from api.state import CLOCK, POOL
from engine.oncall import quiet_hours
from engine.oncall.quiet_hours import QuietHours, QuietHoursInput
from engine.validate import UNSET

# wire name -> the engine input's field
NAMES = {"start": "start", "end": "end", "timeZone": "time_zone", "minSeverity": "min_severity"}

routes = web.RouteTableDef()


@routes.get("/api/me/quiet-hours")
async def show(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        found = await quiet_hours.get(conn, user.id)
    return ok(quiet_hours=to_api(found, request.app[CLOCK].now()) if found else None)


@routes.put("/api/me/quiet-hours")
async def replace(request: web.Request) -> web.Response:
    """Set them whole: start, end and timeZone required, minSeverity default critical."""
    user = current_user(request)
    wanted = QuietHoursInput(**fields(await json_body(request), NAMES))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_names(NAMES):
            saved = await quiet_hours.put(conn, user.id, wanted, now)
    return ok(quiet_hours=to_api(saved, now))


@routes.patch("/api/me/quiet-hours")
async def change(request: web.Request) -> web.Response:
    """Change some fields; the others keep their values (with none set yet, as PUT)."""
    user = current_user(request)
    given = QuietHoursInput(**fields(await json_body(request), NAMES))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        current = await quiet_hours.get(conn, user.id)
        wanted = _merged(given, current) if current else given
        with wire_names(NAMES):
            saved = await quiet_hours.put(conn, user.id, wanted, now)
    return ok(quiet_hours=to_api(saved, now))


@routes.delete("/api/me/quiet-hours")
async def remove(request: web.Request) -> web.Response:
    """No more quiet hours: what they held is paged by the next sweep."""
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        await quiet_hours.delete(conn, user.id, request.app[CLOCK].now())
    return ok(deleted=True)


def _merged(given: QuietHoursInput, current: QuietHours) -> QuietHoursInput:
    kept = QuietHoursInput(
        start=f"{current.start:%H:%M}",
        end=f"{current.end:%H:%M}",
        time_zone=current.time_zone,
        min_severity=current.min_severity,
    )
    changes = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)}
    return dataclasses.replace(kept, **{k: v for k, v in changes.items() if v is not UNSET})


def to_api(hours: QuietHours, now: datetime) -> dict[str, Any]:
    return {
        "start": f"{hours.start:%H:%M}",
        "end": f"{hours.end:%H:%M}",
        "time_zone": hours.time_zone,
        "min_severity": hours.min_severity,
        "quiet_until": hours.until(now),  # the end of the quiet hours in force now, else null
        "updated_at": hours.updated_at,
    }
