"""Handlers for /api/teams: teams and their members; the rules live in engine.teams."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body
from api.responses import ok
from api.state import CLOCK, POOL, public_url
from engine.errors import NotFound
from engine.teams import members
from engine.teams.invites import Invite
from engine.teams.membership import parse_id
from engine.validate import UNSET

routes = web.RouteTableDef()

# Each request body's fields: wire name -> the engine's (engine.teams.members' inputs).
TEAM_NAMES = {"name": "name"}
MEMBER_NAMES = {"email": "email", "role": "role", "name": "name"}
ROLE_NAMES = {"role": "role"}


def _team_input(body: object) -> members.TeamInput:
    return members.TeamInput(**fields(body, TEAM_NAMES, text=("name",)))


def _member_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("no such member in this team", code="MEMBER_NOT_FOUND") from None


@routes.get("/api/teams")
async def list_teams(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        records = await members.list_teams(conn, user.id)
    return ok(teams=[team_to_api(r) for r in records], total=len(records))


@routes.post("/api/teams")
async def create_team(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = _team_input(await json_body(request))
    async with request.app[POOL].acquire() as conn:
        record = await members.create_team(conn, user.id, wanted)
    return ok(http_status=201, team=team_to_api(record))


@routes.get("/api/teams/{id}")
async def get_team(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await members.get_team(conn, user.id, team_id)
    return ok(team=team_to_api(record))


@routes.patch("/api/teams/{id}")
async def update_team(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    wanted = _team_input(await json_body(request))
    async with request.app[POOL].acquire() as conn:
        record = await members.update_team(conn, user.id, team_id, wanted)
    return ok(team=team_to_api(record))


@routes.delete("/api/teams/{id}")
async def delete_team(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await members.delete_team(conn, user.id, team_id)
    return ok(deleted=str(team_id))


@routes.get("/api/teams/{id}/members")
async def list_members(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        records = await members.list_members(conn, user.id, team_id)
    return ok(members=[member_to_api(r) for r in records], total=len(records))


@routes.post("/api/teams/{id}/members")
async def add_member(request: web.Request) -> web.Response:
    """Add a user by email; an unknown email is invited (the set-password link is in this answer only)."""
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    wanted = members.MemberInput(**fields(await json_body(request), MEMBER_NAMES, text=("name",)))
    async with request.app[POOL].acquire() as conn:
        added = await members.add_member(conn, user.id, team_id, wanted, request.app[CLOCK].now())
    invite = invite_to_api(added.invite, public_url(request)) if added.invite else None
    return ok(http_status=201, member=member_to_api(added.member), invite=invite)


@routes.patch("/api/teams/{id}/members/{user_id}")
async def change_role(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    member_id = _member_id(request.match_info["user_id"])
    role = fields(await json_body(request), ROLE_NAMES).get("role", UNSET)
    async with request.app[POOL].acquire() as conn:
        record = await members.change_role(conn, user.id, team_id, member_id, role)
    return ok(member=member_to_api(record))


@routes.delete("/api/teams/{id}/members/{user_id}")
async def remove_member(request: web.Request) -> web.Response:
    """Remove a member, or leave the team (your own user id)."""
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    member_id = _member_id(request.match_info["user_id"])
    async with request.app[POOL].acquire() as conn:
        await members.remove_member(conn, user.id, team_id, member_id)
    return ok(removed=str(member_id))


def team_to_api(record: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    """A team as its member sees it: ``role`` is the caller's own."""
    return {
        "id": str(record["id"]),
        "name": record["name"],
        "personal": record["personal"],
        "role": record["role"],
        "member_count": record["member_count"],
        "created_at": record["created_at"],
    }


def member_to_api(record: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "user_id": str(record["user_id"]),
        "email": record["email"],
        "name": record["name"],
        "role": record["role"],
        "joined_at": record["created_at"],
    }


def invite_to_api(invite: Invite, base: str) -> dict[str, Any]:
    return {"url": f"{base}/invite/{invite.token}", "token": invite.token, "expires_at": invite.expires_at}
