"""A schedule's rows load back as the definition the computation takes, and ``on_call_now`` answers
what ``schedules.on_call`` says of it (the escalation engine's question)."""

from __future__ import annotations

import uuid
from datetime import datetime, time

import asyncpg

from engine.oncall import schedules, store
from engine.oncall.model import ActiveHours, Override, Rotation, Schedule, ShiftUnit
from engine.teams.membership import personal_team_id
from tests.support.factories import new_account
from tests.support.schedules import utc

INSERT_SCHEDULE = "INSERT INTO schedules (id, team_id, name, time_zone) VALUES ($1, $2, 'Ops', $3)"
INSERT_ROTATION = """
INSERT INTO schedule_rotations
    (id, schedule_id, position, participants, shift_length, shift_unit, start,
     active_weekdays, active_start, active_end)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
INSERT_OVERRIDE = """
INSERT INTO schedule_overrides (id, schedule_id, user_id, replaces_user_id, start_at, end_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


async def test_rows_load_as_the_model_and_answer_who_is_on_call(pool: asyncpg.Pool) -> None:
    a, b, c = [(await new_account(pool)).user.id for _ in range(3)]
    schedule_id = uuid.uuid4()
    start = datetime(2025, 1, 6, 9, 0)
    async with pool.acquire() as conn:
        team_id = await personal_team_id(conn, a)
        await conn.execute(INSERT_SCHEDULE, schedule_id, team_id, "America/New_York")
        # Inserted out of order: position, not insertion, makes the layers.
        await conn.execute(
            INSERT_ROTATION, uuid.uuid4(), schedule_id, 1, [c], 1, "days", start, [0, 1, 2, 3, 4],
            time(9), time(17),
        )  # fmt: skip
        await conn.execute(
            INSERT_ROTATION, uuid.uuid4(), schedule_id, 0, [a, b], 1, "weeks", start, None, None, None
        )
        # The later-made override comes last (it wins where both apply), whatever its id.
        early, late = utc("2025-03-11 16:00"), utc("2025-03-11 22:00")
        await conn.execute(
            INSERT_OVERRIDE, uuid.uuid4(), schedule_id, b, None, early, late, utc("2025-03-02 00:00")
        )
        await conn.execute(
            INSERT_OVERRIDE, uuid.uuid4(), schedule_id, a, c, early, late, utc("2025-03-01 00:00")
        )
        loaded = await store.load_schedule(conn, schedule_id)
        expected = Schedule(
            time_zone="America/New_York",
            rotations=(
                Rotation((str(a), str(b)), 1, ShiftUnit.WEEKS, start),
                Rotation(
                    (str(c),), 1, ShiftUnit.DAYS, start, ActiveHours(frozenset(range(5)), time(9), time(17))
                ),
            ),
            overrides=(
                Override(str(a), early, late, replaces=str(c)),
                Override(str(b), early, late),
            ),
        )
        assert loaded == expected
        for at in (
            "2025-03-11 15:59",
            "2025-03-11 16:00",
            "2025-03-11 21:59",
            "2025-03-11 22:00",
            "2025-03-15 12:00",
        ):
            assert await store.on_call_now(conn, schedule_id, utc(at)) == [
                uuid.UUID(u) for u in schedules.on_call(expected, utc(at))
            ], at
        assert await store.on_call_now(conn, schedule_id, utc("2025-03-11 16:00")) == [b]
        assert await store.on_call_now(conn, schedule_id, utc("2025-03-11 14:00")) == [c]  # business hours
        assert await store.on_call_now(conn, schedule_id, utc("2025-01-01 00:00")) == []  # before any start
        assert await store.load_schedule(conn, uuid.uuid4()) is None
        assert await store.on_call_now(conn, uuid.uuid4(), utc("2025-03-11 16:00")) == []
