"""The teams and team_members tables: personal teams, who belongs where, ``require_role``.

Every check of a team's object goes through ``require_role``: not a member is NotFound (a team
you are outside of does not exist for you), a member with too small a role is Forbidden
``INSUFFICIENT_PERMISSIONS``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from engine import db, validate
from engine.errors import Forbidden, NotFound
from engine.teams import Role

INSERT_TEAM = "INSERT INTO teams (id, name, personal_user_id) VALUES ($1, $2, $3) RETURNING id"
INSERT_MEMBER = """
INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3)
ON CONFLICT (team_id, user_id) DO NOTHING
RETURNING team_id
"""
SELECT_PERSONAL = "SELECT id FROM teams WHERE personal_user_id = $1"
SELECT_MEMBERSHIP = """
SELECT t.id, t.name, t.personal_user_id, m.role FROM teams t
JOIN team_members m ON m.team_id = t.id AND m.user_id = $2
WHERE t.id = $1
"""
# The same, holding the team's row until the transaction ends: every change of members takes it,
# so two owners demoting each other at once cannot leave a team without an owner.
LOCK_MEMBERSHIP = SELECT_MEMBERSHIP + " FOR UPDATE OF t"
SELECT_TEAM_IDS = "SELECT team_id FROM team_members WHERE user_id = $1"
# For the queries of a team's objects: the teams of user $n, and the role of user $n in the team of
# the row (NULL: not a member), e.g. ``CALLER_ROLE.format(team="w.team_id", user="$2")``.
TEAMS_OF = "(SELECT team_id FROM team_members WHERE user_id = {user})"
CALLER_ROLE = "(SELECT role FROM team_members WHERE team_id = {team} AND user_id = {user}) AS caller_role"


@dataclass(frozen=True)
class Membership:
    """A user's place in one team."""

    team_id: uuid.UUID
    team_name: str
    personal_user_id: uuid.UUID | None
    role: Role

    @property
    def personal(self) -> bool:
        return self.personal_user_id is not None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Membership:
        return cls(record["id"], record["name"], record["personal_user_id"], Role(record["role"]))


class InsufficientPermissions(Forbidden):
    code = "INSUFFICIENT_PERMISSIONS"

    def __init__(self, needed: Role) -> None:
        super().__init__(f"Insufficient permissions: this needs the {needed} role or above in the team")


def team_not_found() -> NotFound:
    return NotFound("team not found", code="TEAM_NOT_FOUND")


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, team_not_found)


async def create_personal_team(conn: db.Connection, user_id: uuid.UUID, name: str) -> uuid.UUID:
    """The user's own team, the user its owner (called in the transaction that makes the user)."""
    async with conn.transaction():
        team_id = await conn.fetchval(INSERT_TEAM, uuid.uuid4(), name, user_id)
        await conn.execute(INSERT_MEMBER, team_id, user_id, Role.OWNER.value)
    assert isinstance(team_id, uuid.UUID)
    return team_id


async def personal_team_id(conn: db.Connection, user_id: uuid.UUID) -> uuid.UUID:
    team_id = await conn.fetchval(SELECT_PERSONAL, user_id)
    if team_id is None:  # every user has one (made with the account, or by `monoduty migrate`)
        raise team_not_found()
    assert isinstance(team_id, uuid.UUID)
    return team_id


async def team_ids(conn: db.Connection, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Every team the user belongs to, with any role."""
    return [r["team_id"] for r in await conn.fetch(SELECT_TEAM_IDS, user_id)]


async def membership(conn: db.Connection, team_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    record = await conn.fetchrow(SELECT_MEMBERSHIP, team_id, user_id)
    return Membership.from_record(record) if record else None


def check(found: Membership | None, minimum: Role) -> Membership:
    """``found`` if it has at least ``minimum``; NotFound for no membership, else Forbidden."""
    if found is None:
        raise team_not_found()
    if not found.role.at_least(minimum):
        raise InsufficientPermissions(minimum)
    return found


def allowed(role: str | None, minimum: Role, not_found: NotFound) -> Role:
    """The caller's role in an object's team (None: not a member, so ``not_found``) if it is
    ``minimum`` or above, else Forbidden ``INSUFFICIENT_PERMISSIONS``."""
    if role is None:
        raise not_found
    if not Role(role).at_least(minimum):
        raise InsufficientPermissions(minimum)
    return Role(role)


async def require_role(
    conn: db.Connection, team_id: uuid.UUID, user_id: uuid.UUID, minimum: Role, *, lock: bool = False
) -> Membership:
    """The user's membership of the team if their role is ``minimum`` or above.

    ``lock`` holds the team's row until the caller's transaction ends (changes of members).
    """
    record = await conn.fetchrow(LOCK_MEMBERSHIP if lock else SELECT_MEMBERSHIP, team_id, user_id)
    return check(Membership.from_record(record) if record else None, minimum)
