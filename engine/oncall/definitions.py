"""What a request asks of a schedule, as typed inputs, and their parsing into ``model`` values.

The inputs hold the request's values as given (``object``: any JSON value; UNSET: left out); the
parsing here turns them into a Rotation or an Override and raises a ValidationError naming the
field by its snake_case path (``rotations[1].active_hours.start``), the same paths
``validation`` uses. Times on the wire are ISO 8601: a rotation's ``start`` a local date and time
without an offset (``2025-01-06T09:00``), active hours ``HH:MM``, instants with an offset.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time

from engine import validate
from engine.errors import ValidationError
from engine.oncall import validation
from engine.oncall.model import ActiveHours, Override, Rotation, ShiftUnit
from engine.validate import UNSET, Unset

UNITS = tuple(unit.value for unit in ShiftUnit)


@dataclass(frozen=True)
class ScheduleInput:
    """A schedule's create or update; ``rotations`` replaces them all, in the order given."""

    team_id: object = UNSET
    name: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    time_zone: object = UNSET
    rotations: object = UNSET


@dataclass(frozen=True)
class RotationInput:
    name: object = UNSET
    participants: object = UNSET
    shift_length: object = UNSET
    shift_unit: object = UNSET
    start: object = UNSET
    active_hours: object = UNSET


@dataclass(frozen=True)
class ActiveHoursInput:
    weekdays: object = UNSET
    start: object = UNSET
    end: object = UNSET


@dataclass(frozen=True)
class OverrideInput:
    """``user_id`` on call from ``start`` to ``end``; with ``replaces_user_id`` only in their place."""

    user_id: object = UNSET
    replaces_user_id: object = UNSET
    start: object = UNSET
    end: object = UNSET


@dataclass(frozen=True)
class RotationDefinition:
    """A parsed rotation: its name beside the model's value."""

    name: str
    rotation: Rotation


def name(value: str | Unset | None, *, required: bool) -> str | None:
    return validate.text(value, "name", required=required, min_length=1, max_length=100)


def description(value: str | Unset | None) -> str | None:
    return validate.text(value, "description", max_length=1000, nullable=True)


def time_zone(value: object) -> str:
    if value is UNSET:
        raise ValidationError("time_zone is required", field="time_zone")
    validation.time_zone(value)
    assert isinstance(value, str)
    return value


def team_id(value: object) -> uuid.UUID:
    return user_id(value, "team_id", what="a team id")


def rotations(value: object) -> list[RotationDefinition]:
    """The rotations of a request: a list of RotationInput (api/ maps each wire object to one)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValidationError("rotations must be an array of rotations", field="rotations")
    if len(value) > validation.MAX_ROTATIONS:
        raise ValidationError(
            f"rotations has more than {validation.MAX_ROTATIONS} rotations", field="rotations"
        )
    return [rotation(item, f"rotations[{i}]") for i, item in enumerate(value)]


def rotation(value: object, path: str) -> RotationDefinition:
    if not isinstance(value, RotationInput):
        raise ValidationError(f"{path} must be an object", field=path)
    label = validate.text(
        None if value.name is UNSET else _text(value.name, f"{path}.name"),
        f"{path}.name",
        max_length=100,
        nullable=True,
    )
    participants = value.participants
    if not isinstance(participants, Sequence) or isinstance(participants, str) or not participants:
        raise ValidationError(
            f"{path}.participants must name at least one user", field=f"{path}.participants"
        )
    users = tuple(str(user_id(p, f"{path}.participants[{i}]")) for i, p in enumerate(participants))
    unit = validate.choice(value.shift_unit, f"{path}.shift_unit", UNITS)
    if unit is None:
        raise ValidationError(f"{path}.shift_unit is required", field=f"{path}.shift_unit")
    start = _local_datetime(value.start, f"{path}.start")
    hours = (
        None
        if value.active_hours in (UNSET, None)
        else _active_hours(value.active_hours, f"{path}.active_hours")
    )
    if value.shift_length is UNSET:
        raise ValidationError(f"{path}.shift_length is required", field=f"{path}.shift_length")
    parsed = Rotation(users, value.shift_length, ShiftUnit(unit), start, hours)  # type: ignore[arg-type]
    validation.validate_rotation(parsed, path)  # lengths, bounds, the years
    return RotationDefinition(label or "", parsed)


def _active_hours(value: object, path: str) -> ActiveHours:
    if not isinstance(value, ActiveHoursInput):
        raise ValidationError(f"{path} must be an object with weekdays, start and end", field=path)
    days = value.weekdays
    if not isinstance(days, Sequence) or isinstance(days, str) or not days:
        raise ValidationError(
            f"{path}.weekdays must name at least one day, 0 (Monday) to 6 (Sunday)", field=f"{path}.weekdays"
        )
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days):
        raise ValidationError(
            f"{path}.weekdays must name at least one day, 0 (Monday) to 6 (Sunday)", field=f"{path}.weekdays"
        )
    hours = ActiveHours(
        frozenset(days), _local_time(value.start, f"{path}.start"), _local_time(value.end, f"{path}.end")
    )
    validation.validate_active_hours(hours, path)
    return hours


def override(value: OverrideInput) -> Override:
    user = str(user_id(value.user_id, "user_id"))
    replaces = None
    if value.replaces_user_id not in (UNSET, None):
        replaces = str(user_id(value.replaces_user_id, "replaces_user_id"))
    parsed = Override(user, instant(value.start, "start"), instant(value.end, "end"), replaces)
    if parsed.end <= parsed.start:
        raise ValidationError("end must be after start", field="end")
    return parsed


def instant(value: object, field: str) -> datetime:
    """An ISO 8601 date and time with an offset (``Z`` or ``+01:00``)."""
    if value is UNSET:
        raise ValidationError(f"{field} is required", field=field)
    parsed = _datetime(value, field, "a date and time with an offset, e.g. 2025-03-11T12:00:00Z")
    validation.aware(parsed, field)
    return parsed


def user_id(value: object, field: str, *, what: str = "a user id") -> uuid.UUID:
    if value is UNSET:
        raise ValidationError(f"{field} is required", field=field)
    if isinstance(value, str) and len(value) <= validation.MAX_USER_ID:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{field} must be {what}", field=field)


def local_datetime_text(value: datetime) -> str:
    """A naive local wall time as the API writes it: ``2025-01-06T09:00:00``."""
    return value.isoformat(timespec="seconds")


def local_time_text(value: time) -> str:
    return value.isoformat(timespec="minutes" if value.second == 0 else "seconds")


def _local_datetime(value: object, field: str) -> datetime:
    if value is UNSET:
        raise ValidationError(f"{field} is required", field=field)
    parsed = _datetime(value, field, "a local date and time without an offset, e.g. 2025-01-06T09:00")
    if parsed.tzinfo is not None:
        raise ValidationError(
            f"{field} must be a local date and time without an offset (in the schedule's zone)", field=field
        )
    return parsed


def _local_time(value: object, field: str) -> time:
    if value is UNSET:
        raise ValidationError(f"{field} is required", field=field)
    try:
        if not isinstance(value, str):
            raise ValueError
        parsed = time.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field} must be a local time such as 09:00", field=field) from None
    if parsed.tzinfo is not None:
        raise ValidationError(f"{field} must be a local time without an offset", field=field)
    return parsed


def _datetime(value: object, field: str, expected: str) -> datetime:
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field} must be {expected}", field=field) from None


def _text(value: object, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    return value
