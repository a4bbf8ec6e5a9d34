"""Managing teams and their members: the rules of engine.teams, each change under the team's lock.

- anyone makes a team (and owns it); admins rename it; only an owner deletes it; a personal
  team, or one that still has webhooks, cannot be deleted.
- admins add people (by email: an existing user joins, an unknown email becomes a user with a
  one-time set-password link), change roles and remove members; only an owner makes an owner or
  changes or removes one.
- any member may leave. The last owner can neither leave nor be demoted (409 ``LAST_OWNER``),
  and the user a personal team belongs to stays its owner (409 ``PERSONAL_TEAM``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine import db, validate
from engine.auth.users import create_user, find_user
from engine.channels.formats import validate_email
from engine.errors import Conflict, NotFound, ValidationError
from engine.teams import Role, invites
from engine.teams.invites import Invite
from engine.teams.membership import (
    INSERT_MEMBER,
    INSERT_TEAM,
    InsufficientPermissions,
    Membership,
    check,
    require_role,
    team_not_found,
)
from engine.validate import UNSET, Unset

ROLES = tuple(role.value for role in Role)
DEFAULT_ROLE = Role.RESPONDER

TEAM_COLUMNS = """
t.id, t.name, t.personal_user_id IS NOT NULL AS personal, t.created_at, m.role,
(SELECT count(*) FROM team_members c WHERE c.team_id = t.id) AS member_count
"""
SELECT_TEAMS = f"""
SELECT {TEAM_COLUMNS} FROM teams t JOIN team_members m ON m.team_id = t.id AND m.user_id = $1
ORDER BY t.personal_user_id IS NULL, t.created_at, t.id
"""
SELECT_TEAM = f"""
SELECT {TEAM_COLUMNS} FROM teams t JOIN team_members m ON m.team_id = t.id AND m.user_id = $2
WHERE t.id = $1
"""
HAS_WEBHOOKS = "SELECT EXISTS (SELECT 1 FROM webhooks WHERE team_id = $1)"
RENAME_TEAM = "UPDATE teams SET name = $2 WHERE id = $1"
DELETE_TEAM = "DELETE FROM teams WHERE id = $1"
MEMBER_COLUMNS = "m.user_id, u.email, u.name, m.role, m.created_at"
SELECT_MEMBERS = f"""
SELECT {MEMBER_COLUMNS} FROM team_members m JOIN users u ON u.id = m.user_id
WHERE m.team_id = $1
ORDER BY array_position(ARRAY['owner', 'admin', 'responder', 'viewer'], m.role), lower(u.email)
"""
SELECT_MEMBER = f"""
SELECT {MEMBER_COLUMNS} FROM team_members m JOIN users u ON u.id = m.user_id
WHERE m.team_id = $1 AND m.user_id = $2
"""
COUNT_OWNERS = "SELECT count(*) FROM team_members WHERE team_id = $1 AND role = 'owner'"
SET_ROLE = "UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2"
LOCK_TEAM = "SELECT id FROM teams WHERE id = $1 FOR UPDATE"
# The CLI names a team by id, or by a name only one team has (any case).
SELECT_TEAMS_NAMED = "SELECT id FROM teams WHERE lower(name) = lower($1) LIMIT 2"
HAS_NO_PASSWORD = "SELECT password_hash IS NULL FROM users WHERE id = $1"  # noqa: S105
REMOVE_MEMBER = "DELETE FROM team_members WHERE team_id = $1 AND user_id = $2"


@dataclass(frozen=True)
class TeamInput:
    """A team's create or rename (UNSET: left out)."""

    name: str | Unset | None = UNSET


@dataclass(frozen=True)
class MemberInput:
    """Who to add: an email, a role (default responder), a name for a user made by the invite."""

    email: object = UNSET
    role: object = UNSET
    name: str | Unset | None = UNSET


@dataclass(frozen=True)
class Added:
    member: asyncpg.Record
    invite: Invite | None  # a new user's set-password link: shown once


def _team_name(value: str | Unset | None, *, required: bool) -> str | None:
    return validate.text(value, "name", required=required, min_length=1, max_length=100)


def _role(value: object, *, default: Role | None) -> Role:
    if value is UNSET and default is None:
        raise ValidationError("role is required", field="role")
    chosen = validate.choice(value, "role", ROLES, default=default.value if default else None)
    assert chosen is not None
    return Role(chosen)


async def list_teams(conn: db.Connection, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """The user's teams, the personal one first, each with the user's role."""
    return await conn.fetch(SELECT_TEAMS, user_id)


async def get_team(conn: db.Connection, user_id: uuid.UUID, team_id: uuid.UUID) -> asyncpg.Record:
    """The team as its member ``user_id`` sees it (any role reads it)."""
    record = await conn.fetchrow(SELECT_TEAM, team_id, user_id)
    if record is None:
        raise team_not_found()
    return record


async def create_team(conn: db.Connection, user_id: uuid.UUID, wanted: TeamInput) -> asyncpg.Record:
    """A shared team, the caller its owner."""
    name = _team_name(wanted.name, required=True)
    async with conn.transaction():
        team_id = await conn.fetchval(INSERT_TEAM, uuid.uuid4(), name, None)
        await conn.execute(INSERT_MEMBER, team_id, user_id, Role.OWNER.value)
    return await get_team(conn, user_id, team_id)


async def update_team(
    conn: db.Connection, user_id: uuid.UUID, team_id: uuid.UUID, wanted: TeamInput
) -> asyncpg.Record:
    await require_role(conn, team_id, user_id, Role.ADMIN)
    name = _team_name(wanted.name, required=False)
    if name is not None:
        await conn.execute(RENAME_TEAM, team_id, name)
    return await get_team(conn, user_id, team_id)


async def delete_team(conn: db.Connection, user_id: uuid.UUID, team_id: uuid.UUID) -> None:
    """Delete a shared team with no webhooks left (its owner); its incidents went with them."""
    not_empty = Conflict("the team still has webhooks: delete them first", code="TEAM_NOT_EMPTY")
    try:
        async with conn.transaction():
            actor = await require_role(conn, team_id, user_id, Role.OWNER, lock=True)
            if actor.personal:
                raise Conflict("a personal team cannot be deleted", code="PERSONAL_TEAM")
            if await conn.fetchval(HAS_WEBHOOKS, team_id):
                raise not_empty
            await conn.execute(DELETE_TEAM, team_id)
    except asyncpg.ForeignKeyViolationError:  # a webhook made since the check above
        raise not_empty from None


async def list_members(conn: db.Connection, user_id: uuid.UUID, team_id: uuid.UUID) -> list[asyncpg.Record]:
    await require_role(conn, team_id, user_id, Role.VIEWER)
    return await conn.fetch(SELECT_MEMBERS, team_id)


async def add_member(
    conn: db.Connection, actor_id: uuid.UUID, team_id: uuid.UUID, wanted: MemberInput, now: datetime
) -> Added:
    """Add the user with ``email``; an unknown email becomes a user invited to set a password."""
    email = validate_email(None if wanted.email is UNSET else wanted.email, field="email")
    role = _role(wanted.role, default=DEFAULT_ROLE)
    name = validate.text(wanted.name, "name", max_length=100, nullable=True)
    async with conn.transaction():
        actor = await require_role(conn, team_id, actor_id, Role.ADMIN, lock=True)
        if role is Role.OWNER:
            check(actor, Role.OWNER)
        user_id, invite = await _user_for(conn, email, name, team_id, actor_id, now)
        if await conn.fetchval(INSERT_MEMBER, team_id, user_id, role.value) is None:
            raise Conflict("this user is already a member of the team", code="ALREADY_MEMBER")
        member = await conn.fetchrow(SELECT_MEMBER, team_id, user_id)
    assert member is not None
    return Added(member, invite)


async def _user_for(
    conn: db.Connection,
    email: str,
    name: str | None,
    team_id: uuid.UUID,
    invited_by: uuid.UUID | None,
    now: datetime,
) -> tuple[uuid.UUID, Invite | None]:
    """The user with this email, or a new one with a set-password link."""
    user = await find_user(conn, email)
    if user is not None:
        return user.id, None
    user = await create_user(conn, email, name=name)
    invite = await invites.create_invite(conn, user.id, team_id=team_id, invited_by=invited_by, now=now)
    return user.id, invite


async def invite_by_operator(
    conn: db.Connection, team_id: uuid.UUID, email: str, role: Role, now: datetime
) -> Added:
    """``monoduty users invite``: as add_member, run by the operator (no member acts). Safe to
    repeat: a member stays as they are, and a user who still has no password gets a new link
    (an operator may hand out links; an admin of a team may not, for an existing account)."""
    email = validate_email(email, field="email")
    async with conn.transaction():
        if await conn.fetchval(LOCK_TEAM, team_id) is None:
            raise team_not_found()
        user_id, invite = await _user_for(conn, email, None, team_id, None, now)
        await conn.execute(INSERT_MEMBER, team_id, user_id, role.value)
        if invite is None and await conn.fetchval(HAS_NO_PASSWORD, user_id):
            invite = await invites.create_invite(conn, user_id, team_id=team_id, invited_by=None, now=now)
        member = await conn.fetchrow(SELECT_MEMBER, team_id, user_id)
    assert member is not None
    return Added(member, invite)


async def _target(conn: db.Connection, actor: Membership, user_id: uuid.UUID) -> Role:
    """The role of the member ``user_id``; changing an owner takes an owner."""
    record = await conn.fetchrow(SELECT_MEMBER, actor.team_id, user_id)
    if record is None:
        raise NotFound("no such member in this team", code="MEMBER_NOT_FOUND")
    role = Role(record["role"])
    if role is Role.OWNER:
        check(actor, Role.OWNER)
    return role


async def _keep_an_owner(conn: db.Connection, actor: Membership, user_id: uuid.UUID, role: Role) -> None:
    """Refuse what would leave the team without an owner or take a personal team from its user."""
    if actor.personal_user_id == user_id:
        raise Conflict("the user a personal team belongs to stays its owner", code="PERSONAL_TEAM")
    if role is Role.OWNER and await conn.fetchval(COUNT_OWNERS, actor.team_id) <= 1:
        raise Conflict("a team must keep an owner: make another member owner first", code="LAST_OWNER")


async def change_role(
    conn: db.Connection, actor_id: uuid.UUID, team_id: uuid.UUID, user_id: uuid.UUID, wanted: object
) -> asyncpg.Record:
    """Give the member ``user_id`` the role ``wanted``."""
    role = _role(wanted, default=None)
    async with conn.transaction():
        actor = await require_role(conn, team_id, actor_id, Role.ADMIN, lock=True)
        current = await _target(conn, actor, user_id)
        if role is Role.OWNER:
            check(actor, Role.OWNER)
        if current is Role.OWNER and role is not Role.OWNER:
            await _keep_an_owner(conn, actor, user_id, current)
        await conn.execute(SET_ROLE, team_id, user_id, role.value)
        member = await conn.fetchrow(SELECT_MEMBER, team_id, user_id)
    assert member is not None
    return member


async def remove_member(
    conn: db.Connection, actor_id: uuid.UUID, team_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Remove a member (admins), or leave the team (any member, ``user_id`` being the caller)."""
    leaving = actor_id == user_id
    async with conn.transaction():
        actor = await require_role(conn, team_id, actor_id, Role.VIEWER, lock=True)
        if not leaving and not actor.role.at_least(Role.ADMIN):
            raise InsufficientPermissions(Role.ADMIN)
        current = await _target(conn, actor, user_id) if not leaving else actor.role
        await _keep_an_owner(conn, actor, user_id, current)
        await conn.execute(REMOVE_MEMBER, team_id, user_id)


async def find_team(conn: db.Connection, ref: str) -> uuid.UUID:
    """The team with this id, or the one team with this name (the CLI's ``--team``)."""
    try:
        team_id = uuid.UUID(ref)
    except ValueError:
        found = [r["id"] for r in await conn.fetch(SELECT_TEAMS_NAMED, ref)]
        if len(found) > 1:
            message = f"several teams are named {ref!r}: give the team's id"
            raise Conflict(message, code="AMBIGUOUS_TEAM") from None
        if not found:
            raise team_not_found() from None
        return found[0]
    return team_id
