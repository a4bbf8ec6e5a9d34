"""A schedule's overrides: "user X instead of whoever is on call from t1 to t2".

Viewers and up list them. A responder creates or deletes an override only for themselves (its
``user_id`` is theirs, e.g. taking a colleague's shift); admins and up for anyone. The override's
user (and the user it replaces) must be members of the schedule's team.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from engine import db, validate
from engine.errors import NotFound, ValidationError
from engine.oncall import definitions
from engine.oncall.crud import access, non_members
from engine.oncall.definitions import OverrideInput
from engine.teams import Role
from engine.teams.membership import InsufficientPermissions

COLUMNS = "id, schedule_id, user_id, replaces_user_id, start_at, end_at, created_by, created_at"
SELECT_LIST = f"""
SELECT {COLUMNS} FROM schedule_overrides
WHERE schedule_id = $1 AND end_at > $2 AND ($3::timestamptz IS NULL OR start_at < $3)
ORDER BY start_at, created_at, id
LIMIT $4
"""
INSERT = f"""
INSERT INTO schedule_overrides
    (id, schedule_id, user_id, replaces_user_id, start_at, end_at, created_by, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING {COLUMNS}
"""
SELECT_ONE = "SELECT user_id FROM schedule_overrides WHERE id = $1 AND schedule_id = $2"
DELETE = "DELETE FROM schedule_overrides WHERE id = $1 AND schedule_id = $2"
MAX_LISTED = 500


def override_not_found() -> NotFound:
    return NotFound("override not found", code="OVERRIDE_NOT_FOUND")


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, override_not_found)


async def list_overrides(
    conn: db.Connection,
    user_id: uuid.UUID,
    schedule_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime | None,
) -> list[asyncpg.Record]:
    """The overrides that reach into [start, end) (end None: any time after start), by start."""
    await access(conn, user_id, schedule_id, Role.VIEWER)
    return await conn.fetch(SELECT_LIST, schedule_id, start, end, MAX_LISTED)


async def create_override(
    conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID, wanted: OverrideInput, now: datetime
) -> asyncpg.Record:
    async with conn.transaction():
        schedule = await access(conn, user_id, schedule_id, Role.RESPONDER)
        parsed = definitions.override(wanted)
        _may_act_for(Role(schedule["role"]), user_id, uuid.UUID(parsed.user))
        people = {"user_id": uuid.UUID(parsed.user)}
        if parsed.replaces is not None:
            people["replaces_user_id"] = uuid.UUID(parsed.replaces)
        outsiders = await non_members(conn, schedule["team_id"], people.values())
        for field, person in people.items():
            if person in outsiders:
                raise ValidationError(f"{field} is not a member of the schedule's team", field=field)
        record = await conn.fetchrow(
            INSERT,
            uuid.uuid4(),
            schedule_id,
            people["user_id"],
            people.get("replaces_user_id"),
            parsed.start,
            parsed.end,
            user_id,
            now,
        )
    assert record is not None
    return record


async def delete_override(
    conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID, override_id: uuid.UUID
) -> None:
    async with conn.transaction():
        schedule = await access(conn, user_id, schedule_id, Role.RESPONDER, lock=True)
        owner = await conn.fetchval(SELECT_ONE, override_id, schedule_id)
        if owner is None:
            raise override_not_found()
        _may_act_for(Role(schedule["role"]), user_id, owner)
        await conn.execute(DELETE, override_id, schedule_id)


def _may_act_for(role: Role, caller: uuid.UUID, user: uuid.UUID) -> None:
    """A responder acts only for themselves; admins and owners for anyone."""
    if user != caller and not role.at_least(Role.ADMIN):
        raise InsufficientPermissions(Role.ADMIN)
