"""Quiet hours: a person's nightly hours (22:00-07:00 on their own clock) during which pages of
incidents below their ``min_severity`` (default critical: only critical ones go through) wait,
and reach them as one message per contact method when the quiet hours end.

There is no second hold mechanism: a held page stays a pending page (engine.oncall.paging) whose
``due_at`` moves to the end of the quiet hours (plus its rule's delay, so "SMS after 1 minute"
still comes a minute after the push), with ``quiet_until`` marking why. When they come due, the
sweep bundles everything due for that contact into one message ("3 incidents need you: ..."), as
it does for throttles; an incident acknowledged or resolved meanwhile has had its pages cancelled
and is left out. The incident's timeline says "page of Ana held: quiet hours until 07:00
Europe/Berlin". A held page becomes due again at once when the person changes or removes their
quiet hours, or when its incident grows louder (a warning that becomes critical), and the next
sweep decides afresh. Only a person's pages wait: a channel target (a team's list) has no night.

Times are wall times in the person's IANA zone, read with zoneinfo (engine.oncall.localtime's
rules for the hours DST skips or repeats), so 22:00-07:00 is 9 hours most nights and 8 or 10 on
the nights the clocks change.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from engine import db
from engine.channels.base import SEVERITIES
from engine.errors import NotFound, ValidationError
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event
from engine.oncall.localtime import to_instant, to_wall
from engine.oncall.validation import time_zone
from engine.validate import UNSET

DEFAULT_MIN_SEVERITY = "critical"
_WALL = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class QuietHoursInput:
    """What PUT asks for; UNSET is a field left out. Checked here, whatever the types."""

    start: object = UNSET
    end: object = UNSET
    time_zone: object = UNSET
    min_severity: object = UNSET


@dataclass(frozen=True)
class QuietHours:
    user_id: uuid.UUID
    start: time
    end: time
    time_zone: str
    min_severity: str
    updated_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> QuietHours:
        return cls(r["user_id"], r["starts"], r["ends"], r["time_zone"], r["min_severity"], r["updated_at"])

    def holds(self, severity: str) -> bool:
        """Whether a page of an incident of ``severity`` waits (it is quieter than min_severity)."""
        return SEVERITIES.index(severity) > SEVERITIES.index(self.min_severity)

    def until(self, now: datetime) -> datetime | None:
        """The instant these quiet hours end, if ``now`` is inside them; else None."""
        return quiet_until(self.start, self.end, ZoneInfo(self.time_zone), now)


def quiet_until(start: time, end: time, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The end of the quiet hours ``start``-``end`` (wall times in ``tz``; end before start spans
    midnight) that ``now`` is in, or None outside them. A wall time DST skips or repeats maps as
    engine.oncall.localtime says; an end already past (a repeated hour read the second time) is
    not quiet."""
    wall = to_wall(now, tz)
    at = wall.time()
    overnight = end < start
    inside = (at >= start or at < end) if overnight else start <= at < end
    if not inside:
        return None
    day = wall.date() + timedelta(days=1) if overnight and at >= start else wall.date()
    ends_at = to_instant(datetime.combine(day, end), tz)
    return ends_at if ends_at > now else None


COLUMNS = "user_id, starts, ends, time_zone, min_severity, updated_at"
SELECT = f"SELECT {COLUMNS} FROM quiet_hours WHERE user_id = $1"
UPSERT = f"""
INSERT INTO quiet_hours (user_id, starts, ends, time_zone, min_severity, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id) DO UPDATE SET starts = $2, ends = $3, time_zone = $4, min_severity = $5, updated_at = $6
RETURNING {COLUMNS}
"""
DELETE = "DELETE FROM quiet_hours WHERE user_id = $1 RETURNING user_id"
# Held pages due again now: the next sweep holds them again or sends them. Locked ones are being
# sent or held by a sweep right now; that sweep already decides with what it read.
RELEASE_OF_USER = """
UPDATE pages SET due_at = $2, quiet_until = NULL
WHERE id IN (SELECT id FROM pages WHERE user_id = $1 AND status = 'pending' AND quiet_until IS NOT NULL
             FOR UPDATE SKIP LOCKED)
"""
RELEASE_OF_INCIDENT = """
UPDATE pages SET due_at = $2, quiet_until = NULL
WHERE incident_id = $1 AND status = 'pending' AND quiet_until IS NOT NULL
"""
SEVERITY = "SELECT id, severity FROM incidents WHERE id = ANY($1::uuid[])"
# Every pending page of this person for these incidents due before the end (their other rules too),
# that no other sweep holds: one hold, one timeline line per incident.
TO_HOLD = """
SELECT id, incident_id, rule_delay FROM pages
WHERE user_id = $1 AND incident_id = ANY($2::uuid[]) AND status = 'pending' AND due_at < $3
  AND (quiet_until IS NULL OR quiet_until <> $3)
FOR UPDATE SKIP LOCKED
"""
HOLD = """
UPDATE pages SET due_at = $2::timestamptz + make_interval(mins => rule_delay), quiet_until = $2
WHERE id = ANY($1::uuid[])
"""
LOCK_INCIDENTS = "SELECT id FROM incidents WHERE id = ANY($1::uuid[]) FOR SHARE SKIP LOCKED"
LABEL = "SELECT coalesce(nullif(name, ''), email) FROM users WHERE id = $1"


def _wall_time(value: object, field: str) -> time:
    if not isinstance(value, str) or not (match := _WALL.fullmatch(value)):
        raise ValidationError(f"{field} must be a time of day HH:MM from 00:00 to 23:59", field=field)
    return time(int(match.group(1)), int(match.group(2)))


def _severity(value: object) -> str:
    if value is UNSET or value is None:
        return DEFAULT_MIN_SEVERITY
    if not isinstance(value, str) or value not in SEVERITIES:
        raise ValidationError(
            f"min_severity must be one of {', '.join(SEVERITIES)} (pages of it and louder go through)",
            field="min_severity",
        )
    return value


async def get(conn: db.Connection, user_id: uuid.UUID) -> QuietHours | None:
    record = await conn.fetchrow(SELECT, user_id)
    return QuietHours.from_record(record) if record else None


async def put(conn: db.Connection, user_id: uuid.UUID, wanted: QuietHoursInput, now: datetime) -> QuietHours:
    """Set the user's quiet hours (start, end and time_zone required); pages they held are
    decided afresh by the next sweep."""
    start = _wall_time(wanted.start, "start")
    end = _wall_time(wanted.end, "end")
    if start == end:
        raise ValidationError("end must differ from start (quiet hours of no length)", field="end")
    if wanted.time_zone is UNSET:
        raise ValidationError("time_zone is required (an IANA name such as Europe/Berlin)", field="time_zone")
    zone = time_zone(wanted.time_zone)
    severity = _severity(wanted.min_severity)
    async with conn.transaction():
        record = await conn.fetchrow(UPSERT, user_id, start, end, zone.key, severity, now)
        await conn.execute(RELEASE_OF_USER, user_id, now)
    assert record is not None
    return QuietHours.from_record(record)


async def delete(conn: db.Connection, user_id: uuid.UUID, now: datetime) -> None:
    """No more quiet hours: what they held is due now."""
    async with conn.transaction():
        if await conn.fetchval(DELETE, user_id) is None:
            raise NotFound("you have no quiet hours", code="QUIET_HOURS_NOT_FOUND")
        await conn.execute(RELEASE_OF_USER, user_id, now)


async def release_incident(conn: db.Connection, incident_id: uuid.UUID, now: datetime) -> None:
    """The incident grew louder: its held pages are due now, and the next sweep decides again
    (a critical one goes through). Called with the incident's row locked."""
    await conn.execute(RELEASE_OF_INCIDENT, incident_id, now)


@dataclass(frozen=True)
class Held:
    """What one hold did: the claimed pages it kept back, and when they are due again."""

    page_ids: frozenset[uuid.UUID]
    due: tuple[datetime, ...]


NOTHING = Held(frozenset(), ())


async def hold(
    conn: db.Connection,
    user_id: uuid.UUID,
    pages: list[asyncpg.Record],
    now: datetime,
    known: dict[uuid.UUID, QuietHours | None],
) -> Held:
    """Hold those of ``pages`` (claimed, due, one person's) that the person's quiet hours keep
    back at ``now``, with the rest of their pages of those incidents due before the end; say so
    on each incident's timeline. ``known`` caches quiet hours for the sweep's other contacts."""
    if user_id not in known:
        known[user_id] = await get(conn, user_id)
    quiet = known[user_id]
    until = quiet.until(now) if quiet is not None else None
    if quiet is None or until is None or not pages:
        return NOTHING
    rows = await conn.fetch(SEVERITY, [p["incident_id"] for p in pages])
    quieter = {r["id"] for r in rows if quiet.holds(r["severity"])}
    incidents = list({p["incident_id"] for p in pages} & quieter)
    if not incidents:
        return NOTHING
    claimed = {p["id"] for p in pages if p["incident_id"] in incidents}
    rows = await conn.fetch(TO_HOLD, user_id, incidents, until)
    await conn.execute(HOLD, [r["id"] for r in rows], until)
    label = await conn.fetchval(LABEL, user_id)
    local = to_wall(until, ZoneInfo(quiet.time_zone))
    text = (
        f"page of {label} held: quiet hours until {local:%H:%M} {quiet.time_zone} "
        f"({until:%Y-%m-%d %H:%M} UTC)"
    )
    # Only incidents this sweep can share-lock without waiting (engine.oncall.paging._say_held).
    for row in await conn.fetch(LOCK_INCIDENTS, list({r["incident_id"] for r in rows})):
        await add_event(conn, row["id"], EventKind.PAGE_HELD, Actor.SYSTEM, now, text=text, user_id=user_id)
    due = tuple(sorted({until + timedelta(minutes=r["rule_delay"]) for r in rows}))
    return Held(frozenset(claimed), due)
