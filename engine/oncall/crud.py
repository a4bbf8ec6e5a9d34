"""Schedules as their team's members see and change them: every call checks the caller's role.

Viewers and up read a schedule; admins and up create, change and delete one. A caller outside
the schedule's team gets 404 ``SCHEDULE_NOT_FOUND`` (existence is not revealed). Participants
of a rotation must be members of the schedule's team when written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine import db, validate
from engine.errors import NotFound, ValidationError
from engine.oncall import definitions
from engine.oncall.definitions import RotationDefinition, ScheduleInput
from engine.oncall.model import Rotation
from engine.oncall.store import rotation_from_record
from engine.teams import Role
from engine.teams.membership import InsufficientPermissions, personal_team_id, require_role
from engine.validate import UNSET

COLUMNS = "s.id, s.team_id, s.name, s.description, s.time_zone, s.ical_version, s.created_at, s.updated_at"
SELECT_ACCESS = f"""
SELECT {COLUMNS}, m.role FROM schedules s
LEFT JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $2
WHERE s.id = $1
"""
LOCK_ACCESS = SELECT_ACCESS + " FOR UPDATE OF s"
SELECT_LIST = f"""
SELECT {COLUMNS}, m.role FROM schedules s
JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $1
ORDER BY s.created_at, s.id LIMIT $2 OFFSET $3
"""
COUNT_LIST = (
    "SELECT count(*) FROM schedules s JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $1"
)
SELECT_ROTATIONS = """
SELECT id, schedule_id, name, participants, shift_length, shift_unit, start,
       active_weekdays, active_start, active_end
FROM schedule_rotations WHERE schedule_id = ANY($1::uuid[]) ORDER BY schedule_id, position
"""
INSERT_SCHEDULE = """
INSERT INTO schedules (id, team_id, name, description, time_zone) VALUES ($1, $2, $3, $4, $5)
"""
UPDATE_SCHEDULE = """
UPDATE schedules SET name = $2, description = $3, time_zone = $4, updated_at = now() WHERE id = $1
"""
DELETE_SCHEDULE = "DELETE FROM schedules WHERE id = $1"
DELETE_ROTATIONS = "DELETE FROM schedule_rotations WHERE schedule_id = $1"
INSERT_ROTATION = """
INSERT INTO schedule_rotations (id, schedule_id, position, name, participants, shift_length, shift_unit,
    start, active_weekdays, active_start, active_end)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""
SELECT_MEMBERS = "SELECT user_id FROM team_members WHERE team_id = $1 AND user_id = ANY($2::uuid[])"


@dataclass(frozen=True)
class RotationRecord:
    id: uuid.UUID
    name: str
    rotation: Rotation


@dataclass(frozen=True)
class ScheduleRecord:
    """A schedule as a member reads it; ``role`` is the caller's in its team."""

    id: uuid.UUID
    team_id: uuid.UUID
    name: str
    description: str
    time_zone: str
    ical_version: int
    created_at: datetime
    updated_at: datetime
    role: Role
    rotations: tuple[RotationRecord, ...]


def schedule_not_found() -> NotFound:
    return NotFound("schedule not found", code="SCHEDULE_NOT_FOUND")


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, schedule_not_found)


async def access(
    conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID, minimum: Role, *, lock: bool = False
) -> asyncpg.Record:
    """The schedule's row if the user's role in its team is ``minimum`` or above."""
    record = await conn.fetchrow(LOCK_ACCESS if lock else SELECT_ACCESS, schedule_id, user_id)
    if record is None or record["role"] is None:
        raise schedule_not_found()
    if not Role(record["role"]).at_least(minimum):
        raise InsufficientPermissions(minimum)
    return record


async def list_schedules(
    conn: db.Connection, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[ScheduleRecord], int]:
    """The schedules of every team the user belongs to, oldest first, and how many there are."""
    rows = await conn.fetch(SELECT_LIST, user_id, limit, offset)
    total = await conn.fetchval(COUNT_LIST, user_id)
    return await _with_rotations(conn, rows), total


async def get_schedule(conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleRecord:
    record = await access(conn, user_id, schedule_id, Role.VIEWER)
    return (await _with_rotations(conn, [record]))[0]


async def create_schedule(conn: db.Connection, user_id: uuid.UUID, wanted: ScheduleInput) -> ScheduleRecord:
    """A new schedule of ``wanted.team_id`` (default: the user's personal team); admins and up."""
    name = definitions.name(wanted.name, required=True)
    description = definitions.description(wanted.description) or ""
    zone = definitions.time_zone(wanted.time_zone)
    rotations = [] if wanted.rotations is UNSET else definitions.rotations(wanted.rotations)
    schedule_id = uuid.uuid4()
    async with conn.transaction():
        if wanted.team_id is UNSET or wanted.team_id is None:
            team_id = await personal_team_id(conn, user_id)
        else:
            team_id = definitions.team_id(wanted.team_id)
        await require_role(conn, team_id, user_id, Role.ADMIN)
        await _check_participants(conn, team_id, rotations)
        await conn.execute(INSERT_SCHEDULE, schedule_id, team_id, name, description, zone)
        await _write_rotations(conn, schedule_id, rotations)
    return await get_schedule(conn, user_id, schedule_id)


async def update_schedule(
    conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID, wanted: ScheduleInput
) -> ScheduleRecord:
    """Change what ``wanted`` gives (UNSET keeps it); ``rotations`` replaces the list. Admins and up."""
    if wanted.team_id is not UNSET:
        raise ValidationError(
            "team_id cannot be changed: make a new schedule in the other team", field="team_id"
        )
    async with conn.transaction():
        record = await access(conn, user_id, schedule_id, Role.ADMIN, lock=True)
        name = record["name"] if wanted.name is UNSET else definitions.name(wanted.name, required=True)
        description = record["description"]
        if wanted.description is not UNSET:
            description = definitions.description(wanted.description) or ""
        zone = record["time_zone"] if wanted.time_zone is UNSET else definitions.time_zone(wanted.time_zone)
        await conn.execute(UPDATE_SCHEDULE, schedule_id, name, description, zone)
        if wanted.rotations is not UNSET:
            rotations = definitions.rotations(wanted.rotations)
            await _check_participants(conn, record["team_id"], rotations)
            await conn.execute(DELETE_ROTATIONS, schedule_id)
            await _write_rotations(conn, schedule_id, rotations)
    return await get_schedule(conn, user_id, schedule_id)


async def delete_schedule(conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
    async with conn.transaction():
        await access(conn, user_id, schedule_id, Role.ADMIN, lock=True)
        await conn.execute(DELETE_SCHEDULE, schedule_id)


async def non_members(conn: db.Connection, team_id: uuid.UUID, users: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``users`` who are not members of the team."""
    wanted = set(users)
    found = {r["user_id"] for r in await conn.fetch(SELECT_MEMBERS, team_id, list(wanted))}
    return wanted - found


async def _check_participants(
    conn: db.Connection, team_id: uuid.UUID, rotations: Sequence[RotationDefinition]
) -> None:
    everyone = {uuid.UUID(u) for r in rotations for u in r.rotation.participants}
    outsiders = await non_members(conn, team_id, everyone)
    for i, rotation in enumerate(rotations):
        for j, user in enumerate(rotation.rotation.participants):
            if uuid.UUID(user) in outsiders:
                field = f"rotations[{i}].participants[{j}]"
                raise ValidationError(f"{field} is not a member of the schedule's team", field=field)


async def _write_rotations(
    conn: db.Connection, schedule_id: uuid.UUID, rotations: Sequence[RotationDefinition]
) -> None:
    for position, item in enumerate(rotations):
        r, hours = item.rotation, item.rotation.active_hours
        await conn.execute(
            INSERT_ROTATION,
            uuid.uuid4(),
            schedule_id,
            position,
            item.name,
            [uuid.UUID(u) for u in r.participants],
            r.shift_length,
            r.shift_unit.value,
            r.start,
            None if hours is None else sorted(hours.weekdays),
            None if hours is None else hours.start,
            None if hours is None else hours.end,
        )


async def _with_rotations(conn: db.Connection, rows: Sequence[asyncpg.Record]) -> list[ScheduleRecord]:
    by_schedule: dict[uuid.UUID, list[RotationRecord]] = {r["id"]: [] for r in rows}
    for r in await conn.fetch(SELECT_ROTATIONS, list(by_schedule)):
        by_schedule[r["schedule_id"]].append(RotationRecord(r["id"], r["name"], rotation_from_record(r)))
    return [
        ScheduleRecord(
            id=row["id"],
            team_id=row["team_id"],
            name=row["name"],
            description=row["description"],
            time_zone=row["time_zone"],
            ical_version=row["ical_version"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            role=Role(row["role"]),
            rotations=tuple(by_schedule[row["id"]]),
        )
        for row in rows
    ]
