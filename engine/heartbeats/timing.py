"""When a heartbeat's next ping is expected: durations ("5m", "2h", "1d"), and cron times in a time
zone (croniter over zoneinfo, so a daily "0 3 * * *" in Europe/Berlin is 03:00 local time on
either side of a DST change).

Cron times across a DST change follow the cron daemons (Vixie cron, cronie) that run the jobs
which ping: a time skipped in spring ("30 2" on the night clocks go from 02:00 to 03:00) is
expected at the change, 03:00, and a time that happens twice in autumn is expected once, at its
first occurrence, unless the hour field is ``*`` (an every-hour job runs in both of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from engine.errors import ValidationError
from engine.oncall.validation import time_zone

UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?")
MAX_SECONDS = 366 * 86400  # a year: longer is a typo
MAX_CRON = 100
CRON_SHAPE = 'five fields (minute hour day-of-month month day-of-week), such as "0 3 * * *"'


def parse_duration(value: object, field: str, *, minimum: int) -> int:
    """Seconds of a duration such as "30s", "5m", "2h", "1d" or "1h30m", from ``minimum`` to a year."""
    text = value.strip().lower() if isinstance(value, str) else ""
    match = _DURATION.fullmatch(text) if text else None
    if match is None:
        raise ValidationError(f'{field} must be a duration such as "30s", "5m", "2h" or "1d"', field=field)
    seconds = sum(int(n) * unit for n, (_, unit) in zip(match.groups(), UNITS, strict=True) if n)
    if seconds < minimum:
        raise ValidationError(
            f"{field} must be at least {format_duration(minimum)} (MONODUTY_MIN_HEARTBEAT_PERIOD)",
            field=field,
        )
    if seconds > MAX_SECONDS:
        raise ValidationError(f"{field} must be at most {MAX_SECONDS // 86400}d", field=field)
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest spelling parse_duration reads back: 300 -> "5m", 5400 -> "1h30m"."""
    parts = []
    for name, unit in UNITS:
        if seconds >= unit:
            parts.append(f"{seconds // unit}{name}")
            seconds %= unit
    return "".join(parts) or "0s"


def parse_cron(value: object, field: str = "cron") -> str:
    """A cron expression of five fields that croniter reads and that fires at some time."""
    expression = " ".join(value.split()) if isinstance(value, str) else ""
    if not expression or len(expression) > MAX_CRON or len(expression.split()) != 5:
        raise ValidationError(f"{field} must be {CRON_SHAPE}", field=field)
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception:  # croniter raises several kinds on a bad field, and one for a date that never comes
        raise ValidationError(
            f"{field} is not a cron expression that ever fires: {CRON_SHAPE}", field=field
        ) from None
    return expression


def parse_time_zone(value: object, field: str = "time_zone") -> str:
    return time_zone(value, field).key


@dataclass(frozen=True)
class Timing:
    """A heartbeat's schedule: a ping every ``period_seconds``, or at each ``cron`` time in
    ``time_zone``; down once ``grace_seconds`` have passed after a ping was expected."""

    period_seconds: int | None
    cron: str | None
    time_zone: str
    grace_seconds: int

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.grace_seconds)

    def expected_after(self, at: datetime) -> datetime:
        """When the ping after one at ``at`` is expected."""
        if self.period_seconds is not None:
            return at + timedelta(seconds=self.period_seconds)
        assert self.cron is not None
        return cron_after(self.cron, ZoneInfo(self.time_zone), at)


def cron_after(expression: str, zone: ZoneInfo, at: datetime) -> datetime:
    """The first time of ``expression`` in ``zone`` after ``at`` (see the module docstring on DST)."""
    times = croniter(expression, at.astimezone(zone))
    every_hour = expression.split()[1] == "*"
    candidate: datetime = times.get_next(datetime)
    # A wall time happens twice on at most one night a year: one more step always leaves it.
    for _ in range(3):
        if every_hour or not _second_occurrence(candidate, zone):
            break
        candidate = times.get_next(datetime)
    return candidate.astimezone(UTC)


def _second_occurrence(moment: datetime, zone: ZoneInfo) -> bool:
    """Whether ``moment`` reads a wall time that ``zone`` showed an hour (or so) before already."""
    first = moment.replace(tzinfo=None).replace(tzinfo=zone, fold=0)
    return first.astimezone(UTC) != moment.astimezone(UTC)
