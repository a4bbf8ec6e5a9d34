"""Checks of a schedule definition; each failure is a ValidationError naming its field path.

Paths are the snake_case names a request body will use: ``time_zone``, ``rotations[0].participants``,
``rotations[1].active_hours.end``, ``overrides[2].end``. The computation (``schedules``) runs these
first, so it never meets a rotation without participants or an unknown zone.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from engine.errors import ValidationError
from engine.oncall.model import ActiveHours, Override, Rotation, Schedule, ShiftUnit

# A year, in each unit: longer shifts are a typo, and unbounded ones overflow date arithmetic.
MAX_SHIFT_LENGTH = {ShiftUnit.HOURS: 24 * 366, ShiftUnit.DAYS: 366, ShiftUnit.WEEKS: 53}
MAX_PARTICIPANTS = 500
MAX_ROTATIONS = 50
MAX_USER_ID = 200
# Times outside these years are typos, and near datetime's own limits shift arithmetic overflows.
YEARS = range(1900, 3000)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # Asking ZoneInfo directly would accept any file under the zone directories (paths). The list
    # itself still holds two names that are no zone: "localtime" (a link to this host's
    # /etc/localtime, so it differs by machine) and "Factory" (the "zone not set" placeholder).
    return frozenset(available_timezones()) - {"localtime", "Factory", "posixrules"}


def time_zone(name: object, field: str = "time_zone") -> ZoneInfo:
    """The zone of an IANA name such as ``Europe/Berlin``."""
    if not isinstance(name, str) or name not in _zone_names():
        raise _error(field, "must be an IANA time zone name such as Europe/Berlin")
    return ZoneInfo(name)


def validate_schedule(schedule: Schedule) -> ZoneInfo:
    """Check a whole schedule; answers its zone."""
    tz = time_zone(schedule.time_zone)
    if len(schedule.rotations) > MAX_ROTATIONS:
        raise ValidationError(f"a schedule has at most {MAX_ROTATIONS} rotations", field="rotations")
    for i, rotation in enumerate(schedule.rotations):
        validate_rotation(rotation, f"rotations[{i}]")
    for i, override in enumerate(schedule.overrides):
        validate_override(override, f"overrides[{i}]")
    return tz


def validate_rotation(rotation: Rotation, path: str = "rotation") -> None:
    if not rotation.participants:
        raise _error(f"{path}.participants", "must name at least one user")
    if len(rotation.participants) > MAX_PARTICIPANTS:
        raise _error(f"{path}.participants", f"has more than {MAX_PARTICIPANTS} users")
    for i, user in enumerate(rotation.participants):
        _user_id(user, f"{path}.participants[{i}]")
    if not isinstance(rotation.shift_unit, ShiftUnit):
        raise _error(f"{path}.shift_unit", "must be hours, days or weeks")
    longest = MAX_SHIFT_LENGTH[rotation.shift_unit]
    length = rotation.shift_length
    if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= longest:
        raise _error(
            f"{path}.shift_length", f"must be a whole number from 1 to {longest} ({rotation.shift_unit})"
        )
    if not isinstance(rotation.start, datetime) or rotation.start.tzinfo is not None:
        raise _error(
            f"{path}.start", "must be a local date and time without an offset (in the schedule's zone)"
        )
    if rotation.start.year not in YEARS:
        raise _error(f"{path}.start", f"must be in the years {YEARS.start} to {YEARS.stop - 1}")
    if rotation.active_hours is not None:
        validate_active_hours(rotation.active_hours, f"{path}.active_hours")


def validate_active_hours(hours: ActiveHours, path: str = "active_hours") -> None:
    if not hours.weekdays or not all(isinstance(d, int) and 0 <= d <= 6 for d in hours.weekdays):
        raise _error(f"{path}.weekdays", "must name at least one day, 0 (Monday) to 6 (Sunday)")
    for name in ("start", "end"):
        value = getattr(hours, name)
        if not isinstance(value, time) or value.tzinfo is not None:
            raise _error(f"{path}.{name}", "must be a local time without an offset")
    if hours.end == hours.start:
        raise _error(f"{path}.end", f"must differ from {path}.start (leave active_hours out for all day)")


def validate_override(override: Override, path: str = "override") -> None:
    _user_id(override.user, f"{path}.user")
    if override.replaces is not None:
        _user_id(override.replaces, f"{path}.replaces")
    for name in ("start", "end"):
        aware(getattr(override, name), f"{path}.{name}")
    if override.end <= override.start:
        raise _error(f"{path}.end", f"must be after {path}.start")


def window(start: datetime, end: datetime, *, longest: timedelta, names: tuple[str, str]) -> None:
    """A question's time range: aware, in order, and not longer than ``longest``."""
    for value, name in ((start, names[0]), (end, names[1])):
        aware(value, name)
    if end <= start:
        raise _error(names[1], f"must be after {names[0]}")
    if end - start > longest:
        raise _error(names[1], f"must be at most {longest.days} days after {names[0]}")


def aware(value: object, name: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _error(name, "must be a date and time with an offset")
    if value.year not in YEARS:
        raise _error(name, f"must be in the years {YEARS.start} to {YEARS.stop - 1}")


def _user_id(user: object, field: str) -> None:
    if not isinstance(user, str) or not user or len(user) > MAX_USER_ID:
        raise _error(field, "must be a user id")


def _error(field: str, text: str) -> ValidationError:
    return ValidationError(f"{field} {text}", field=field)
