"""The Team page: a team's members and their roles; an admin invites (by email: an unknown
address gets a one-time set-password link, engine.teams.invites), changes roles and removes.

Every change is the engine's (engine.teams.members, as ``/api/teams`` does): it checks the
caller's role, so a viewer's forged POST is refused there (403), not only by the page hiding
the forms. Making or changing an owner takes an owner; a team always keeps one.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.dashboard.field_errors import at_field
from api.dashboard.render import form, render, see_other
from api.dashboard.zones import day_and_time, viewer_zone
from api.state import CLOCK, POOL, public_url
from engine.errors import Conflict, NotFound, ValidationError
from engine.teams import Role
from engine.teams.invites import Invite
from engine.teams.members import MemberInput, TeamInput, add_member, change_role, create_team, list_members
from engine.teams.members import list_teams as engine_list_teams
from engine.teams.members import remove_member as engine_remove_member
from engine.teams.membership import parse_id

routes = web.RouteTableDef()
ROLE_LABELS = {
    "viewer": "Viewer: sees everything",
    "responder": "Responder: also acknowledges and resolves",
    "admin": "Admin: also configures and manages members",
    "owner": "Owner: also deletes the team, makes owners",
}
INVITE_FIELDS = {"email": ("email", "Email"), "name": ("invite_name", "Name"), "role": ("role", "Role")}
TEAM_FIELDS = {"name": ("team_name", "Team name")}


def _member_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("no such member in this team", code="MEMBER_NOT_FOUND") from None


def _team_view(record: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(record["id"]),
        "name": "Personal" if record["personal"] else record["name"],
        "personal": record["personal"],
        "role": record["role"],
        "members": record["member_count"],
    }


async def _page(
    request: web.Request,
    team_ref: str | None,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    invite: tuple[str, Invite] | None = None,
    message: str = "",
    status: int = 200,
) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        teams = await engine_list_teams(conn, user.id)
        chosen = next((t for t in teams if str(t["id"]) == team_ref), None)
        if chosen is None and team_ref:
            raise NotFound("team not found", code="TEAM_NOT_FOUND")
        # The first shared team, else the personal one: shared teams are where people are.
        chosen = chosen or next((t for t in teams if not t["personal"]), teams[0])
        members = await list_members(conn, user.id, chosen["id"])
    role = Role(chosen["role"])
    is_admin = role.at_least(Role.ADMIN)
    tz, _ = viewer_zone(request)
    assignable = [r for r in Role if r is not Role.OWNER or role is Role.OWNER]
    context = {
        "section": "team",
        "teams": [_team_view(t) for t in teams],
        "team": _team_view(chosen),
        "my_role": role.value,
        "is_admin": is_admin,
        "members": [
            {
                "id": str(m["user_id"]),
                "name": m["name"] or "",
                "email": m["email"],
                "role": m["role"],
                "role_label": ROLE_LABELS[m["role"]].split(":")[0],
                "me": m["user_id"] == user.id,
                "joined": day_and_time(m["created_at"], tz),
                # Changing an owner takes an owner (the engine says so too); offer what may work.
                "changeable": is_admin and (m["role"] != Role.OWNER or role is Role.OWNER),
            }
            for m in members
        ],
        "roles": [(r.value, ROLE_LABELS[r.value]) for r in assignable],
        "errors": errors or {},
        "values": {"role": "responder", **(values or {})},
        "invite": {
            "email": invite[0],
            "url": f"{public_url(request)}/invite/{invite[1].token}",
            "expires": day_and_time(invite[1].expires_at, tz),
        }
        if invite
        else None,
        "message": message,
    }
    return render(request, "team.html", context, status=status)


@routes.get("/team", name="dashboard.team")
async def team_page(request: web.Request) -> web.Response:
    return await _page(request, request.query.get("team"), message=_notice(request.query.get("done", "")))


def _notice(done: str) -> str:
    return {
        "role": "Role changed.",
        "removed": "Member removed.",
        "added": "Member added.",
        "created": "Team created: you are its owner. Invite the people who share the pager.",
    }.get(done, "")


@routes.post("/team/new", name="dashboard.team_create")
async def new_team(request: web.Request) -> web.Response:
    user = current_user(request)
    given = await form(request)
    try:
        async with request.app[POOL].acquire() as conn:
            record = await create_team(conn, user.id, TeamInput(name=given.get("team_name", "")))
    except ValidationError as exc:
        name, text = at_field(exc, TEAM_FIELDS)
        return await _page(request, request.query.get("team"), errors={name: text}, values=given, status=400)
    return see_other(f"/team?team={record['id']}&done=created")


@routes.post("/team/{id}/members", name="dashboard.team_invite")
async def invite(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    given = await form(request)
    wanted = MemberInput(
        email=given.get("email", ""),
        role=given.get("role", "responder"),
        name=given.get("invite_name") or None,
    )
    try:
        async with request.app[POOL].acquire() as conn:
            added = await add_member(conn, user.id, team_id, wanted, request.app[CLOCK].now())
    except ValidationError as exc:
        name, text = at_field(exc, INVITE_FIELDS)
        return await _page(request, str(team_id), errors={name: text}, values=given, status=400)
    except Conflict as exc:
        return await _page(request, str(team_id), errors={"email": exc.message}, values=given, status=409)
    if added.invite is None:
        return see_other(f"/team?team={team_id}&done=added")
    # The link is shown on this answer only (no-store), as the API's answer holds it once.
    return await _page(request, str(team_id), invite=(added.member["email"], added.invite))


@routes.post("/team/{id}/members/{user_id}/role", name="dashboard.team_role")
async def set_role(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    member = _member_id(request.match_info["user_id"])
    given = await form(request)
    async with request.app[POOL].acquire() as conn:
        await change_role(conn, user.id, team_id, member, given.get("role", ""))
    return see_other(f"/team?team={team_id}&done=role")


@routes.get("/team/{id}/members/{user_id}/remove", name="dashboard.team_remove_confirm")
async def confirm_remove(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    member = _member_id(request.match_info["user_id"])
    async with request.app[POOL].acquire() as conn:
        team = next((t for t in await engine_list_teams(conn, user.id) if t["id"] == team_id), None)
        if team is None:
            raise NotFound("team not found", code="TEAM_NOT_FOUND")
        found = next((m for m in await list_members(conn, user.id, team_id) if m["user_id"] == member), None)
    if found is None:
        raise NotFound("no such member in this team", code="MEMBER_NOT_FOUND")
    context = {
        "section": "team",
        "team": _team_view(team),
        "member": {
            "id": str(member),
            "name": found["name"] or found["email"],
            "email": found["email"],
            "me": member == user.id,
        },
    }
    return render(request, "team_remove.html", context)


@routes.post("/team/{id}/members/{user_id}/remove", name="dashboard.team_remove")
async def remove(request: web.Request) -> web.Response:
    user = current_user(request)
    team_id = parse_id(request.match_info["id"])
    member = _member_id(request.match_info["user_id"])
    async with request.app[POOL].acquire() as conn:
        await engine_remove_member(conn, user.id, team_id, member)
    if member == user.id:
        return see_other("/team")
    return see_other(f"/team?team={team_id}&done=removed")
