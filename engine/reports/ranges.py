"""Report date ranges: ``"YYYY-MM-DD to YYYY-MM-DD"``, both days included, in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from engine.errors import ValidationError

DEFAULT_DAYS = 7
_RANGE = re.compile(r"\s*(\d{4}-\d{2}-\d{2})\s+to\s+(\d{4}-\d{2}-\d{2})\s*")
FIELD = "date_range"  # how errors name it


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days from ``first`` to ``last``, inclusive."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first instant in the range."""
        return datetime.combine(self.first, time(), UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the range (queries use ``< end``)."""
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def each_day(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(self.days)]

    def __str__(self) -> str:
        return f"{self.first.isoformat()} to {self.last.isoformat()}"


def default_range(today: date) -> DateRange:
    """The last seven days, today included."""
    return DateRange(today - timedelta(days=DEFAULT_DAYS - 1), today)


def parse_range(raw: object, *, today: date, max_days: int) -> DateRange:
    """Parse a date range; None is the default range. Each kind of mistake has its own code."""
    if raw is None:
        return default_range(today)
    match = _RANGE.fullmatch(raw) if isinstance(raw, str) else None
    try:
        if match is None:
            raise ValueError("no match")
        first, last = date.fromisoformat(match.group(1)), date.fromisoformat(match.group(2))
        if last == date.max:  # its end, the next midnight, is past what a date can hold
            raise ValueError("last day")
    except ValueError:
        raise ValidationError(
            f'{FIELD} is malformed: expected "YYYY-MM-DD to YYYY-MM-DD" with real dates',
            field=FIELD,
            code="DATE_RANGE_MALFORMED",
        ) from None
    if last < first:
        raise ValidationError(
            f"{FIELD} is reversed: {first.isoformat()} is after {last.isoformat()}",
            field=FIELD,
            code="DATE_RANGE_REVERSED",
        )
    found = DateRange(first, last)
    if found.days > max_days:
        raise ValidationError(
            f"{FIELD} is too long: {found.days} days, the maximum is {max_days}",
            field=FIELD,
            code="DATE_RANGE_TOO_LONG",
        )
    return found
