"""One rotation on its own: its handoffs, who holds shift k, and its active-hours windows.

Shift k (k = 0, 1, ...) starts at handoff k and belongs to ``participants[k % n]``:
- ``days``/``weeks``: handoff k is the wall time ``start + k * length`` days (or weeks), turned into
  an instant by ``localtime``'s rule, so handoffs keep their local clock time across DST;
- ``hours``: handoff k is the instant of ``start`` plus ``k * length`` elapsed hours (as PagerDuty
  does for hour-based rotations), so every shift is exactly that long. A "09:00/21:00 local" split
  is better written as two daily rotations with active hours 09:00-21:00 and 21:00-09:00.
Active hours are windows of local wall time, turned into instants by the same rule; a window that
DST leaves empty (one lying wholly inside a spring-forward gap) covers nothing that day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.oncall.localtime import to_instant, to_wall
from engine.oncall.model import ActiveHours, Rotation, ShiftUnit

Segment = tuple[str, datetime, datetime]  # user, start, end (UTC, end exclusive)
Window = tuple[datetime, datetime]

_DAY = timedelta(days=1)


def _step(rotation: Rotation) -> timedelta:
    if rotation.shift_unit is ShiftUnit.HOURS:
        return timedelta(hours=rotation.shift_length)
    days = rotation.shift_length * (7 if rotation.shift_unit is ShiftUnit.WEEKS else 1)
    return timedelta(days=days)


def handoff(rotation: Rotation, tz: ZoneInfo, k: int) -> datetime:
    """The instant shift ``k`` starts (k may be negative: the grid extends backwards)."""
    if rotation.shift_unit is ShiftUnit.HOURS:
        return to_instant(rotation.start, tz) + k * _step(rotation)
    return to_instant(rotation.start + k * _step(rotation), tz)


def shift_index(rotation: Rotation, tz: ZoneInfo, at: datetime) -> int:
    """The k whose shift holds ``at`` (negative before the rotation starts)."""
    if rotation.shift_unit is ShiftUnit.HOURS:
        k = (at - to_instant(rotation.start, tz)) // _step(rotation)
    else:
        k = (to_wall(at, tz) - rotation.start) // _step(rotation)
    # The estimate from wall time can be one off next to a DST change: settle it on instants.
    while handoff(rotation, tz, k + 1) <= at:
        k += 1
    while handoff(rotation, tz, k) > at:
        k -= 1
    return k


def user_at(rotation: Rotation, tz: ZoneInfo, at: datetime) -> str | None:
    """Who this rotation puts on call at ``at``, or None where it does not cover."""
    k = shift_index(rotation, tz, at)
    if k < 0:
        return None
    if rotation.active_hours is not None and not _within(rotation.active_hours, tz, at):
        return None
    return rotation.participants[k % len(rotation.participants)]


def segments(rotation: Rotation, tz: ZoneInfo, start: datetime, end: datetime) -> list[Segment]:
    """This rotation's shifts within [start, end), clipped to it and to the active hours; sorted,
    disjoint, none empty."""
    shifts = list(_shifts(rotation, tz, start, end))
    if rotation.active_hours is None:
        return shifts
    return _intersect(shifts, list(windows(rotation.active_hours, tz, start, end)))


def _shifts(rotation: Rotation, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[Segment]:
    k = max(shift_index(rotation, tz, start), 0)
    begin = handoff(rotation, tz, k)
    while begin < end:
        finish = handoff(rotation, tz, k + 1)
        clipped_start, clipped_end = max(begin, start), min(finish, end)
        if clipped_start < clipped_end:
            yield rotation.participants[k % len(rotation.participants)], clipped_start, clipped_end
        k, begin = k + 1, finish


def windows(hours: ActiveHours, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[Window]:
    """The active-hours windows meeting [start, end), clipped to it, in order."""
    # One day either side: a window that crosses midnight starts the day before, and a zone may
    # change its offset at midnight.
    day = to_wall(start, tz).date() - _DAY
    last = to_wall(end, tz).date() + _DAY
    while day <= last:
        window = _window(hours, tz, day)
        if window is not None and window[0] < end and window[1] > start:
            yield max(window[0], start), min(window[1], end)
        day += _DAY


def _window(hours: ActiveHours, tz: ZoneInfo, day: date) -> Window | None:
    """The window that starts on ``day``, if that weekday has one and DST leaves it any length."""
    if day.weekday() not in hours.weekdays:
        return None
    end_day = day + _DAY if hours.end <= hours.start else day
    begin = to_instant(datetime.combine(day, hours.start), tz)
    finish = to_instant(datetime.combine(end_day, hours.end), tz)
    return (begin, finish) if begin < finish else None


def _within(hours: ActiveHours, tz: ZoneInfo, at: datetime) -> bool:
    today = to_wall(at, tz).date()
    for day in (today - _DAY, today, today + _DAY):
        window = _window(hours, tz, day)
        if window is not None and window[0] <= at < window[1]:
            return True
    return False


def _intersect(shifts: list[Segment], active: list[Window]) -> list[Segment]:
    """The parts of sorted disjoint shifts inside sorted disjoint windows (two cursors)."""
    out: list[Segment] = []
    i = j = 0
    while i < len(shifts) and j < len(active):
        user, shift_start, shift_end = shifts[i]
        window_start, window_end = active[j]
        begin, finish = max(shift_start, window_start), min(shift_end, window_end)
        if begin < finish:
            out.append((user, begin, finish))
        if shift_end <= window_end:
            i += 1
        else:
            j += 1
    return out
