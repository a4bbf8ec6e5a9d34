"""Who is on call and the final shifts, as a schedule's team members ask (viewers and up).

The computation is ``engine.oncall.schedules`` over the stored definition (``store.load``); this
adds the people (id, email, name) and names a shift's sources by their rows' ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine import db
from engine.oncall import schedules, store
from engine.oncall.crud import access, schedule_not_found
from engine.oncall.model import Shift
from engine.oncall.validation import aware, window
from engine.teams import Role

SELECT_USERS = "SELECT id, email, name FROM users WHERE id = ANY($1::uuid[])"


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    email: str | None  # None: the user no longer exists
    name: str | None


@dataclass(frozen=True)
class SourceRef:
    """Where a piece of a shift comes from: a rotation (with its name) or an override."""

    kind: str
    id: uuid.UUID
    name: str | None = None


@dataclass(frozen=True)
class ShiftAnswer:
    person: Person
    start: datetime
    end: datetime
    sources: tuple[SourceRef, ...]


@dataclass(frozen=True)
class OnCall:
    """One user on call at an instant, and until when (None: no handoff within the next 90 days)."""

    person: Person
    until: datetime | None


async def people(conn: db.Connection, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Person]:
    wanted = set(ids)
    found = {
        r["id"]: Person(r["id"], r["email"], r["name"]) for r in await conn.fetch(SELECT_USERS, list(wanted))
    }
    return {i: found.get(i, Person(i, None, None)) for i in wanted}


async def on_call(
    conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID, at: datetime
) -> list[OnCall]:
    """Who is on call at ``at``, each with the end of their shift."""
    await access(conn, user_id, schedule_id, Role.VIEWER)
    aware(at, "at")
    horizon = at + schedules.MAX_RANGE
    loaded = await store.load(conn, schedule_id, start=at, end=horizon)
    if loaded is None:
        raise schedule_not_found()
    users = schedules.on_call(loaded.schedule, at)
    if not users:
        return []
    found = await people(conn, (uuid.UUID(u) for u in users))
    # The shift that holds `at` starts there (shifts are clipped to the range) and is the user's.
    first = schedules.shifts(loaded.schedule, at, horizon)[0]
    until = None if first.end >= horizon else first.end
    return [OnCall(found[uuid.UUID(u)], until) for u in users]


async def shifts(
    conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID, start: datetime, end: datetime
) -> list[ShiftAnswer]:
    """The final shifts within [start, end) (at most 90 days)."""
    await access(conn, user_id, schedule_id, Role.VIEWER)
    window(start, end, longest=schedules.MAX_RANGE, names=("from", "to"))
    loaded = await store.load(conn, schedule_id, start=start, end=end)
    if loaded is None:
        raise schedule_not_found()
    computed = schedules.shifts(loaded.schedule, start, end)
    return await described(conn, loaded, computed)


async def described(conn: db.Connection, loaded: store.Loaded, computed: list[Shift]) -> list[ShiftAnswer]:
    found = await people(conn, (uuid.UUID(s.user) for s in computed))

    def ref(kind: str, index: int) -> SourceRef:
        if kind == "rotation":
            return SourceRef(kind, loaded.rotation_ids[index], loaded.rotation_names[index])
        return SourceRef(kind, loaded.override_ids[index])

    return [
        ShiftAnswer(
            found[uuid.UUID(s.user)], s.start, s.end, tuple(ref(src.kind, src.index) for src in s.sources)
        )
        for s in computed
    ]
