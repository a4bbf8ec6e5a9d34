"""The on-call scenario the schedule tests share (issue 11), and a short way to write instants.

``new_york()``: America/New_York, 2025 (DST starts Sun 9 March 02:00 EST -> 03:00 EDT and ends
Sun 2 November 02:00 EDT -> 01:00 EST; EST = UTC-5, EDT = UTC-4).
- rotations[0], the base: weekly, alice -> bob -> carol, first handoff Mon 6 January 09:00 local.
  Week k (k weeks after 6 January) belongs to [alice, bob, carol][k % 3].
- rotations[1], business hours: daily, dave -> erin, first handoff Mon 6 January 09:00 local,
  active Mon-Fri 09:00-17:00 local. Day d (d days after 6 January) is dave's when d is even.
- overrides[0]: frank instead of whoever is on call, Tue 11 March 12:00-18:00 EDT (16:00-22:00Z).

Through the API: ``rotation(participants, **changes)`` is a rotation's body, ``create_schedule``
makes a schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from aiohttp.test_utils import TestClient

from engine.oncall.model import ActiveHours, Override, Rotation, Schedule, ShiftUnit
from tests.support.factories import Account

WEEKDAYS = frozenset(range(5))


def utc(text: str) -> datetime:
    """``"2025-03-10 13:00"`` as that UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def new_york() -> Schedule:
    return Schedule(
        time_zone="America/New_York",
        rotations=(
            Rotation(("alice", "bob", "carol"), 1, ShiftUnit.WEEKS, datetime(2025, 1, 6, 9, 0)),
            Rotation(
                ("dave", "erin"),
                1,
                ShiftUnit.DAYS,
                datetime(2025, 1, 6, 9, 0),
                ActiveHours(WEEKDAYS, time(9, 0), time(17, 0)),
            ),
        ),
        overrides=(Override("frank", utc("2025-03-11 16:00"), utc("2025-03-11 22:00")),),
    )


def rotation(participants: list[str], **changes: object) -> dict[str, object]:
    """A rotation as the API takes it: weekly, handoff Monday 6 January 2025 09:00 local."""
    return {
        "name": "primary",
        "participants": participants,
        "shiftLength": 1,
        "shiftUnit": "weeks",
        "start": "2025-01-06T09:00",
        **changes,
    }


async def create_schedule(client: TestClient, account: Account, **body: object) -> dict[str, Any]:
    """A schedule made through the API (America/New_York unless ``timeZone`` is given)."""
    wanted = {"name": "Ops", "timeZone": "America/New_York", **body}
    resp = await client.post("/api/schedules", json=wanted, headers=account.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["schedule"]
