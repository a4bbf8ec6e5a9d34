"""Maintenance windows as people manage them: on one webhook (``webhook_id``) or on every webhook
of a team (``team_id``), from ``starts_at`` (now by default) to ``ends_at`` or for a ``duration``
("90m", "2h", "1d", "1h30m"), 1 minute to 7 days long, with a reason.

Admins of the team create and change them, its members read them, anyone else gets 404. Ending one
early: PATCH ``ends_at`` to now (a time already past counts as now), or DELETE it, which ends an
active window now (its held incidents are paged by the workers' next sweep, as ``page_on_end``
says, and it stays listed as ended) and removes one not started yet or already released. A window
stays listed for 7 days after it ends.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import asyncpg

from engine import db, validate
from engine.errors import Conflict, NotFound, ValidationError
from engine.oncall.definitions import instant
from engine.teams import Role
from engine.teams.membership import CALLER_ROLE, TEAMS_OF, allowed, require_role
from engine.validate import UNSET, Unset

SHORTEST = timedelta(minutes=1)
LONGEST = timedelta(days=7)
LISTED_AFTER_END = timedelta(days=7)
_DURATION = re.compile(r"(?:(\d{1,4})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?")


class WindowStatus(StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(frozen=True)
class WindowInput:
    """A create or an update; UNSET is a field left out. Checked here, whatever the types."""

    webhook_id: object = UNSET
    team_id: object = UNSET
    starts_at: object = UNSET
    ends_at: object = UNSET
    duration: object = UNSET
    reason: str | Unset | None = UNSET
    page_on_end: object = UNSET


COLUMNS = """m.id, m.team_id, m.webhook_id, m.starts_at, m.ends_at, m.reason, m.page_on_end, m.created_by,
    m.created_at, m.ended_at"""
LIST = f"""
SELECT {COLUMNS} FROM maintenance_windows m
WHERE m.team_id IN {TEAMS_OF.format(user="$1")} AND m.ends_at > $2
ORDER BY m.starts_at, m.id
"""
ONE = f"""
SELECT {COLUMNS}, {CALLER_ROLE.format(team="m.team_id", user="$2")} FROM maintenance_windows m WHERE m.id = $1
"""
LOCK = ONE + "FOR UPDATE OF m"
WEBHOOK_TEAM = (
    f"SELECT w.team_id, {CALLER_ROLE.format(team='w.team_id', user='$2')} FROM webhooks w WHERE w.id = $1"
)
INSERT = f"""
INSERT INTO maintenance_windows AS m (id, team_id, webhook_id, starts_at, ends_at, reason, page_on_end,
    created_by, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {COLUMNS}
"""
UPDATE = f"""
UPDATE maintenance_windows AS m SET starts_at = $2, ends_at = $3, reason = $4, page_on_end = $5,
    reminded_at = CASE WHEN m.ends_at = $3 THEN m.reminded_at END
WHERE m.id = $1
RETURNING {COLUMNS}
"""
DELETE = "DELETE FROM maintenance_windows WHERE id = $1"


def not_found() -> NotFound:
    return NotFound("maintenance window not found", code="MAINTENANCE_WINDOW_NOT_FOUND")


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, not_found)


def status(window: asyncpg.Record, now: datetime) -> WindowStatus:
    if window["ended_at"] is not None or window["ends_at"] <= now:
        return WindowStatus.ENDED
    return WindowStatus.ACTIVE if window["starts_at"] <= now else WindowStatus.SCHEDULED


def parse_duration(value: object, field: str) -> timedelta:
    """``90m``, ``2h``, ``1d``, ``1h30m``: days, hours and minutes, in that order."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) and value else None
    if match is None:
        raise ValidationError(f'{field} must be a duration such as "30m", "2h", "1d" or "1h30m"', field=field)
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


async def list_windows(conn: db.Connection, user_id: uuid.UUID, now: datetime) -> list[asyncpg.Record]:
    """The windows of the caller's teams not ended, or ended within the last 7 days."""
    return await conn.fetch(LIST, user_id, now - LISTED_AFTER_END)


async def get_window(conn: db.Connection, user_id: uuid.UUID, window_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(ONE, window_id, user_id)
    allowed(row["caller_role"] if row else None, Role.VIEWER, not_found())
    assert row is not None
    return row


async def create_window(
    conn: db.Connection, user_id: uuid.UUID, wanted: WindowInput, now: datetime
) -> asyncpg.Record:
    """A team admin's window on one webhook of the team (``webhook_id``) or all of them (``team_id``)."""
    reason = validate.text(wanted.reason, "reason", required=True, min_length=1, max_length=500)
    page_on_end = _flag(wanted.page_on_end, "page_on_end", default=True)
    starts_at, ends_at = new_period(wanted, now)
    async with conn.transaction():
        team_id, webhook_id = await target(conn, user_id, wanted, Role.ADMIN)
        row = await conn.fetchrow(
            INSERT, uuid.uuid4(), team_id, webhook_id, starts_at, ends_at, reason, page_on_end, user_id, now
        )
    assert row is not None
    return row


async def update_window(
    conn: db.Connection, user_id: uuid.UUID, window_id: uuid.UUID, wanted: WindowInput, now: datetime
) -> asyncpg.Record:
    """A team admin changes a window not ended yet; fields left out keep their value."""
    for name in ("webhook_id", "team_id"):
        if getattr(wanted, name) is not UNSET:
            raise ValidationError(f"{name} cannot change; make a new window instead", field=name)
    async with conn.transaction():
        current = await conn.fetchrow(LOCK, window_id, user_id)
        allowed(current["caller_role"] if current else None, Role.ADMIN, not_found())
        assert current is not None
        state = status(current, now)
        if state is WindowStatus.ENDED:
            raise Conflict("this maintenance window has ended", code="MAINTENANCE_WINDOW_ENDED")
        starts_at, ends_at = changed_period(
            wanted, current["starts_at"], current["ends_at"], now, started=state is WindowStatus.ACTIVE
        )
        reason = current["reason"]
        if wanted.reason is not UNSET:
            reason = validate.text(wanted.reason, "reason", required=True, min_length=1, max_length=500)
        page_on_end = _flag(wanted.page_on_end, "page_on_end", default=current["page_on_end"])
        row = await conn.fetchrow(UPDATE, window_id, starts_at, ends_at, reason, page_on_end)
    assert row is not None
    return row


async def delete_window(
    conn: db.Connection, user_id: uuid.UUID, window_id: uuid.UUID, now: datetime
) -> asyncpg.Record | None:
    """End an active window now (returned, as it now is), or remove one not started or already
    released (None)."""
    async with conn.transaction():
        current = await conn.fetchrow(LOCK, window_id, user_id)
        allowed(current["caller_role"] if current else None, Role.ADMIN, not_found())
        assert current is not None
        state = status(current, now)
        if state is WindowStatus.SCHEDULED or current["ended_at"] is not None:
            await conn.execute(DELETE, window_id)
            return None
        if state is WindowStatus.ACTIVE:
            return await conn.fetchrow(
                UPDATE, window_id, current["starts_at"], now, current["reason"], current["page_on_end"]
            )
        return current  # its end has come and the workers release it now: nothing to change


class Timed(Protocol):
    """What a request for a period gives (a window's, a silence's): UNSET for what it leaves out."""

    @property
    def starts_at(self) -> object: ...
    @property
    def ends_at(self) -> object: ...
    @property
    def duration(self) -> object: ...


def new_period(wanted: Timed, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of a new period: from ``starts_at`` (default now) to ``ends_at`` or for
    ``duration``, 1 minute to 7 days, ending in the future."""
    starts_at = now if wanted.starts_at is UNSET else instant(wanted.starts_at, "starts_at")
    ends_at = _end(wanted, starts_at, required=True)
    assert ends_at is not None
    _check_span(starts_at, ends_at, now, _end_field(wanted))
    return starts_at, ends_at


def changed_period(
    wanted: Timed, starts_at: datetime, ends_at: datetime, now: datetime, *, started: bool
) -> tuple[datetime, datetime]:
    """(start, end) of a period being changed (fields left out keep their value): ``starts_at``
    only before it has started, an end already past counts as now (it ends now, however short
    that makes it), else 1 minute to 7 days."""
    if wanted.starts_at is not UNSET:
        if started:
            raise ValidationError("starts_at cannot change once it has started", field="starts_at")
        starts_at = instant(wanted.starts_at, "starts_at")
    ends_at = max(_end(wanted, starts_at, required=False) or ends_at, now)
    _check_span(starts_at, ends_at, None, _end_field(wanted), shortest=timedelta(0) if started else SHORTEST)
    return starts_at, ends_at


def _end(wanted: Timed, starts_at: datetime, *, required: bool) -> datetime | None:
    if wanted.ends_at is not UNSET and wanted.duration is not UNSET:
        raise ValidationError("duration cannot be given with ends_at: give one of them", field="duration")
    if wanted.duration is not UNSET:
        return starts_at + parse_duration(wanted.duration, "duration")
    if wanted.ends_at is not UNSET:
        return instant(wanted.ends_at, "ends_at")
    if required:
        raise ValidationError('ends_at or duration ("2h") is required', field="ends_at")
    return None


def _end_field(wanted: Timed) -> str:
    """The field that set the end: what an error about the window's length names."""
    return "duration" if wanted.duration is not UNSET else "ends_at"


def _check_span(
    starts_at: datetime,
    ends_at: datetime,
    now: datetime | None,
    field: str,
    *,
    shortest: timedelta = SHORTEST,
) -> None:
    """1 minute to 7 days, ending after ``now`` (a new window: nothing to hold in the past)."""
    if ends_at <= starts_at:
        raise ValidationError(f"{field} must end the window after starts_at", field=field)
    if now is not None and ends_at <= now:
        raise ValidationError(f"{field} must end the window in the future", field=field)
    if not shortest <= ends_at - starts_at <= LONGEST:
        raise ValidationError(f"{field} must make the window 1 minute to 7 days long", field=field)


def _flag(value: object, field: str, *, default: bool) -> bool:
    if value is UNSET:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be true or false", field=field)
    return value


class Targeted(Protocol):
    """What a request for a team's webhooks gives: one webhook, or the whole team (UNSET: left out)."""

    @property
    def webhook_id(self) -> object: ...
    @property
    def team_id(self) -> object: ...


async def target(
    conn: db.Connection, user_id: uuid.UUID, wanted: Targeted, minimum: Role
) -> tuple[uuid.UUID, uuid.UUID | None]:
    """(team, webhook or None): exactly one of webhook_id and team_id, the caller ``minimum`` or
    above in its team (a webhook the caller cannot see is a 400 naming webhook_id)."""
    if (wanted.webhook_id is UNSET) == (wanted.team_id is UNSET):
        raise ValidationError(
            "webhook_id (one webhook) or team_id (every webhook of the team) is required, not both",
            field="webhook_id",
        )
    if wanted.team_id is not UNSET:
        team_id = _uuid(wanted.team_id, "team_id", "the id of one of your teams")
        await require_role(conn, team_id, user_id, minimum)
        return team_id, None
    webhook_id = _uuid(wanted.webhook_id, "webhook_id", "the id of one of your webhooks")
    row = await conn.fetchrow(WEBHOOK_TEAM, webhook_id, user_id)
    if row is None or row["caller_role"] is None:
        raise ValidationError("webhook_id must be the id of one of your webhooks", field="webhook_id")
    allowed(row["caller_role"], minimum, not_found())
    return row["team_id"], webhook_id


def _uuid(value: object, field: str, what: str) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{field} must be {what}", field=field)
