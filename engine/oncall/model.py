"""What a schedule is made of, as plain frozen values (the database and the API map onto these).

Times of a definition that people think of as clock readings (a rotation's start and handoff, active
hours) are naive *local wall times* in the schedule's time zone; times that are moments (overrides,
computed shifts, the ``at`` of a question) are timezone-aware instants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from typing import Literal


class ShiftUnit(StrEnum):
    """How a rotation's shift length is counted.

    ``hours`` are elapsed hours (a 12-hour shift lasts 12 hours even across a DST change, so its
    handoffs move by an hour on the local clock afterwards); ``days`` and ``weeks`` are calendar
    steps in local wall time (a daily handoff at 09:00 stays at 09:00 local).
    """

    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"


@dataclass(frozen=True)
class ActiveHours:
    """When a rotation covers time at all, e.g. Mon-Fri 09:00-17:00.

    ``weekdays`` uses ``date.weekday()`` numbers (0 = Monday ... 6 = Sunday) and names the day a
    window *starts*; an ``end`` at or before ``start`` ends the window on the next day (22:00-06:00).
    """

    weekdays: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class Rotation:
    """One layer: participants take turns, one shift each, in order, from ``start`` on.

    ``start`` is the first handoff, a naive local wall time; its time of day is the handoff time and
    (for weekly shifts) its weekday the handoff day. Before ``start`` the layer covers nothing.
    """

    participants: tuple[str, ...]
    shift_length: int
    shift_unit: ShiftUnit
    start: datetime
    active_hours: ActiveHours | None = None

    @property
    def handoff_time(self) -> time:
        return self.start.time()


@dataclass(frozen=True)
class Override:
    """``user`` is on call from ``start`` to ``end`` (aware instants, end exclusive).

    With ``replaces`` unset it takes the whole interval, whoever the layers put there (and also
    where no layer covers); with ``replaces`` set it applies only while the layers put that user
    on call. A shift swap is two overrides with ``replaces`` set.
    """

    user: str
    start: datetime
    end: datetime
    replaces: str | None = None


@dataclass(frozen=True)
class Schedule:
    """A time zone (IANA name), rotations as layers (a later one wins where it covers), overrides
    (which win over every layer; among overlapping overrides, the later one wins)."""

    time_zone: str
    rotations: tuple[Rotation, ...]
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class Source:
    """Where a piece of a computed shift comes from: ``rotations[i]`` or ``overrides[i]``."""

    kind: Literal["rotation", "override"]
    index: int

    @property
    def path(self) -> str:
        return f"{self.kind}s[{self.index}]"


@dataclass(frozen=True)
class Shift:
    """A computed stretch of time with one user on call (aware UTC instants, end exclusive).

    Adjacent pieces of the same user are one shift; ``sources`` lists where its pieces came from,
    in order, each once.
    """

    user: str
    start: datetime
    end: datetime
    sources: tuple[Source, ...] = field(default=())
