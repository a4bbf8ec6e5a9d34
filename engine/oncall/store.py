"""A schedule's rows (schedules, schedule_rotations, schedule_overrides) as an ``engine.oncall.model``
Schedule, and the question the escalation engine asks of it: who is on call now.

No team check here: callers are the engine's own (an escalation policy names the schedule, the
routes check the caller's role first). User ids are uuids in the database and strings in the model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from engine import db
from engine.oncall import schedules
from engine.oncall.model import ActiveHours, Override, Rotation, Schedule, ShiftUnit

SELECT_SCHEDULE = "SELECT time_zone FROM schedules WHERE id = $1"
SELECT_ROTATIONS = """
SELECT id, name, participants, shift_length, shift_unit, start, active_weekdays, active_start, active_end
FROM schedule_rotations WHERE schedule_id = $1 ORDER BY position
"""
# Creation order is precedence (a later override wins where two overlap), so it is the model's order.
SELECT_OVERRIDES = """
SELECT id, user_id, replaces_user_id, start_at, end_at FROM schedule_overrides
WHERE schedule_id = $1
  AND ($2::timestamptz IS NULL OR end_at > $2) AND ($3::timestamptz IS NULL OR start_at < $3)
ORDER BY created_at, id
"""


@dataclass(frozen=True)
class Loaded:
    """A schedule's definition with the row ids of its rotations and overrides, index for index
    (a computed shift's ``Source`` names an index)."""

    schedule: Schedule
    rotation_ids: tuple[uuid.UUID, ...]
    rotation_names: tuple[str, ...]
    override_ids: tuple[uuid.UUID, ...]


async def load_schedule(
    conn: db.Connection,
    schedule_id: uuid.UUID,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Schedule | None:
    """The schedule's definition, or None if there is no such schedule.

    ``start``/``end`` (aware) leave out the overrides that do not reach into [start, end): they
    cannot change the answer for that range, and old ones pile up.
    """
    loaded = await load(conn, schedule_id, start=start, end=end)
    return None if loaded is None else loaded.schedule


async def load(
    conn: db.Connection,
    schedule_id: uuid.UUID,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Loaded | None:
    """``load_schedule`` with the rows' ids."""
    time_zone = await conn.fetchval(SELECT_SCHEDULE, schedule_id)
    if time_zone is None:
        return None
    rotation_rows = await conn.fetch(SELECT_ROTATIONS, schedule_id)
    override_rows = await conn.fetch(SELECT_OVERRIDES, schedule_id, start, end)
    schedule = Schedule(
        time_zone=time_zone,
        rotations=tuple(rotation_from_record(r) for r in rotation_rows),
        overrides=tuple(override_from_record(r) for r in override_rows),
    )
    return Loaded(
        schedule,
        tuple(r["id"] for r in rotation_rows),
        tuple(r["name"] for r in rotation_rows),
        tuple(r["id"] for r in override_rows),
    )


async def on_call_now(conn: db.Connection, schedule_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
    """The users on call at ``at`` (aware): one, or none (no schedule, or nothing covers ``at``)."""
    schedule = await load_schedule(conn, schedule_id, start=at, end=at + timedelta(microseconds=1))
    if schedule is None:
        return []
    return [uuid.UUID(user) for user in schedules.on_call(schedule, at)]


def rotation_from_record(record: asyncpg.Record) -> Rotation:
    hours = None
    if record["active_weekdays"] is not None:
        hours = ActiveHours(
            frozenset(record["active_weekdays"]), record["active_start"], record["active_end"]
        )
    return Rotation(
        participants=tuple(str(user) for user in record["participants"]),
        shift_length=record["shift_length"],
        shift_unit=ShiftUnit(record["shift_unit"]),
        start=record["start"],
        active_hours=hours,
    )


def override_from_record(record: asyncpg.Record) -> Override:
    replaces = record["replaces_user_id"]
    return Override(
        user=str(record["user_id"]),
        start=record["start_at"],
        end=record["end_at"],
        replaces=None if replaces is None else str(replaces),
    )
