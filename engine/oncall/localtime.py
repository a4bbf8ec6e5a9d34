"""Local wall time to instants and back, with one rule for the times DST makes odd.

- A wall time that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Berlin on the last
  Sunday of March) happens at the first instant after the gap: the transition itself, which the
  local clock shows as 03:00. A handoff planned at 02:30 is at 03:00 that day.
- A wall time that happens twice (fall-back, e.g. 02:30 on the last Sunday of October) happens at
  its first occurrence (PEP 495 ``fold=0``, still summer time).

Both rules keep the mapping monotonic: a later wall time never maps to an earlier instant, so
handoffs stay in order and a shift is never negative (it may become empty, see ``schedules``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive local wall time in ``tz``, by the rules above."""
    first = wall.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant  # exists (once, or the first of two)
    return _gap_end(wall, tz)


def to_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall time ``tz``'s clocks show at an aware instant."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """The transition instant that skips over ``wall``.

    Read with the offset before the gap (``fold=0``) the wall time lands after the transition;
    with the offset after it (``fold=1``) it lands before. The transition lies in between; zoneinfo
    does not expose it, so find it by bisection to the second (transitions are on whole seconds).
    """
    after = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    late_offset = after.astimezone(tz).utcoffset()
    # Whole seconds since the epoch; invariant: `low` is before the transition, `high` at or past it.
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == late_offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
