"""Handlers for /api/silences; the rules live in engine.maintenance.silences."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_paths
from api.responses import ok
from api.state import CLOCK, POOL
from engine.maintenance import silences
from engine.maintenance.silences import SilenceInput

routes = web.RouteTableDef()

# The request body's fields, and a matcher's: wire name -> the engine's (SilenceInput, Matcher).
NAMES = {
    "webhookId": "webhook_id",
    "teamId": "team_id",
    "matchers": "matchers",
    "startsAt": "starts_at",
    "endsAt": "ends_at",
    "duration": "duration",
    "comment": "comment",
}
MATCHER_NAMES = {"name": "name", "value": "value", "isRegex": "is_regex", "isEqual": "is_equal"}


def _input(body: object) -> SilenceInput:
    given = fields(body, NAMES, text=("comment",))
    if isinstance(given.get("matchers"), list):
        given["matchers"] = [_matcher(m) for m in given["matchers"]]
    return SilenceInput(**given)


def _matcher(item: object) -> object:
    """A matcher object with the engine's names (an unknown field keeps its own, for the engine's
    error); anything else is left for the engine to refuse."""
    if not isinstance(item, Mapping):
        return item
    return {MATCHER_NAMES.get(name, name): value for name, value in item.items()}


@routes.get("/api/silences")
async def list_silences(request: web.Request) -> web.Response:
    user = current_user(request)
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        found = await silences.list_silences(conn, user.id, now)
    return ok(silences=[to_api(s, now) for s in found], total=len(found))


@routes.post("/api/silences")
async def create_silence(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = _input(await json_body(request))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_paths({**NAMES, **MATCHER_NAMES}):
            silence = await silences.create_silence(conn, user.id, wanted, now)
    return ok(http_status=201, silence=to_api(silence, now))


@routes.get("/api/silences/{id}")
async def show_silence(request: web.Request) -> web.Response:
    user = current_user(request)
    silence_id = silences.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        silence = await silences.get_silence(conn, user.id, silence_id)
    return ok(silence=to_api(silence, request.app[CLOCK].now()))


@routes.patch("/api/silences/{id}")
async def update_silence(request: web.Request) -> web.Response:
    """Extend or shorten a silence, or change its comment or matchers (fields left out keep theirs)."""
    user = current_user(request)
    silence_id = silences.parse_id(request.match_info["id"])
    wanted = _input(await json_body(request))
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        with wire_paths({**NAMES, **MATCHER_NAMES}):
            silence = await silences.update_silence(conn, user.id, silence_id, wanted, now)
    return ok(silence=to_api(silence, now))


@routes.delete("/api/silences/{id}")
async def expire_silence(request: web.Request) -> web.Response:
    """Expire a silence now (``deleted`` false: it stays listed, expired), or remove one not started."""
    user = current_user(request)
    silence_id = silences.parse_id(request.match_info["id"])
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        silence = await silences.expire_silence(conn, user.id, silence_id, now)
    if silence is None:
        return ok(deleted=True, silence=None)
    return ok(deleted=False, silence=to_api(silence, now))


def to_api(silence: asyncpg.Record, now: datetime) -> dict[str, Any]:
    started, ended = silence["starts_at"] <= now, silence["ends_at"] <= now
    return {
        "id": str(silence["id"]),
        "team_id": str(silence["team_id"]),
        "webhook_id": str(silence["webhook_id"]) if silence["webhook_id"] else None,
        "status": "expired" if ended else "active" if started else "pending",
        "matchers": [
            {**m.to_json(), "operator": m.operator} for m in map(silences.matcher_of, silence["matchers"])
        ],
        "starts_at": silence["starts_at"],
        "ends_at": silence["ends_at"],
        "comment": silence["comment"],
        "created_by": str(silence["created_by"]) if silence["created_by"] else None,
        "created_at": silence["created_at"],
    }
