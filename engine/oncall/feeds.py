"""Calendar feeds: a schedule's shifts, and one user's shifts across the schedules of their teams,
at ``/ical/<token>.ics``.

Calendar clients cannot send credentials, so the token is the only secret. It names the feed
(``s`` a schedule or ``u`` a user, the id) and its version, signed with a key derived from
MONODUTY_SECRET_KEY: ``s<id hex>.<version>.<signature>``. Rotating a feed raises its version
(``ical_version`` on the row), which revokes every URL handed out before. Without a secret key
there are no feeds (no URL is made, every token is unknown).

A feed covers from local midnight 7 days back (a stable start, so a shift's UID stays put all
day, see ``ical``) to local midnight 60 days ahead (UTC midnights for a user's feed).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from engine import db
from engine.auth import signing
from engine.errors import MonodutyError
from engine.oncall import ical, localtime, schedules, store
from engine.oncall.crud import access
from engine.oncall.model import Shift
from engine.oncall.validation import time_zone as load_zone
from engine.teams import Role

PURPOSE = "ical-feed"
DAYS_BACK = 7
DAYS_AHEAD = 60
_TOKEN = re.compile(r"([su])([0-9a-f]{32})\.(\d{1,9})\.([A-Za-z0-9_-]{27})")

SELECT_SCHEDULE = "SELECT name, time_zone, ical_version FROM schedules WHERE id = $1"
SELECT_USER = "SELECT email, name, ical_version FROM users WHERE id = $1"
SELECT_USER_VERSION = "SELECT ical_version FROM users WHERE id = $1"
SELECT_USER_SCHEDULES = """
SELECT s.id, s.name FROM schedules s JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $1
ORDER BY s.created_at, s.id
"""
SELECT_NAMES = "SELECT id, coalesce(nullif(name, ''), email) AS name FROM users WHERE id = ANY($1::uuid[])"
ROTATE_SCHEDULE = "UPDATE schedules SET ical_version = ical_version + 1 WHERE id = $1 RETURNING ical_version"
ROTATE_USER = "UPDATE users SET ical_version = ical_version + 1 WHERE id = $1 RETURNING ical_version"


class FeedKind(StrEnum):
    SCHEDULE = "s"
    USER = "u"


@dataclass(frozen=True)
class Feed:
    kind: FeedKind
    owner_id: uuid.UUID
    version: int


def no_secret_key() -> MonodutyError:
    return MonodutyError(
        "calendar feeds are off: the server has no MONODUTY_SECRET_KEY",
        code="FEEDS_NOT_CONFIGURED",
        status=503,
    )


def token(secret_key: str, feed: Feed) -> str:
    payload = f"{feed.kind.value}{feed.owner_id.hex}.{feed.version}"
    return f"{payload}.{signing.sign(signing.derive_key(secret_key, PURPOSE), payload)}"


def parse(secret_key: str | None, raw: str) -> Feed | None:
    """The feed a token names if its signature is good (whether it is current is the database's)."""
    match = _TOKEN.fullmatch(raw)
    if secret_key is None or match is None:
        return None
    kind, owner, version, signature = match.groups()
    if not signing.verify(signing.derive_key(secret_key, PURPOSE), f"{kind}{owner}.{version}", signature):
        return None
    return Feed(FeedKind(kind), uuid.UUID(owner), int(version))


def feed_range(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight ``DAYS_BACK`` days ago to local midnight ``DAYS_AHEAD`` days on: the same
    range all day, so the same feed (UIDs, the last event's end) all day."""
    today = now.astimezone(zone).date()
    start = localtime.to_instant(datetime.combine(today - timedelta(days=DAYS_BACK), time(0)), zone)
    return start, localtime.to_instant(datetime.combine(today + timedelta(days=DAYS_AHEAD), time(0)), zone)


async def render(conn: db.Connection, feed: Feed, now: datetime) -> bytes | None:
    """The feed's calendar, or None for an unknown or revoked one."""
    if feed.kind is FeedKind.SCHEDULE:
        return await _schedule_feed(conn, feed, now)
    return await _user_feed(conn, feed, now)


async def user_feed_version(conn: db.Connection, user_id: uuid.UUID) -> int:
    version = await conn.fetchval(SELECT_USER_VERSION, user_id)
    assert isinstance(version, int)
    return version


async def rotate_schedule_feed(conn: db.Connection, user_id: uuid.UUID, schedule_id: uuid.UUID) -> int:
    """A new URL for the schedule's feed (admins and up); the old one stops working."""
    async with conn.transaction():
        await access(conn, user_id, schedule_id, Role.ADMIN, lock=True)
        version = await conn.fetchval(ROTATE_SCHEDULE, schedule_id)
    assert isinstance(version, int)
    return version


async def rotate_user_feed(conn: db.Connection, user_id: uuid.UUID) -> int:
    version = await conn.fetchval(ROTATE_USER, user_id)
    assert isinstance(version, int)
    return version


async def _schedule_feed(conn: db.Connection, feed: Feed, now: datetime) -> bytes | None:
    row = await conn.fetchrow(SELECT_SCHEDULE, feed.owner_id)
    if row is None or row["ical_version"] != feed.version:
        return None
    start, end = feed_range(now, load_zone(row["time_zone"]))
    loaded = await store.load(conn, feed.owner_id, start=start, end=end)
    if loaded is None:
        return None
    found = schedules.shifts(loaded.schedule, start, end)
    return ical.render(
        found,
        calendar_name=f"{row['name']}: on call",
        uid_namespace=f"schedule:{feed.owner_id}",
        now=now,
        time_zone=row["time_zone"],
        names=await _names(conn, found),
    )


async def _user_feed(conn: db.Connection, feed: Feed, now: datetime) -> bytes | None:
    row = await conn.fetchrow(SELECT_USER, feed.owner_id)
    if row is None or row["ical_version"] != feed.version:
        return None
    start, end = feed_range(now, ZoneInfo("UTC"))
    mine: list[tuple[Shift, tuple[str, str]]] = []
    for schedule in await conn.fetch(SELECT_USER_SCHEDULES, feed.owner_id):
        loaded = await store.load(conn, schedule["id"], start=start, end=end)
        if loaded is None:  # deleted meanwhile
            continue
        label = (str(schedule["id"]), schedule["name"])
        mine += [
            (s, label) for s in schedules.shifts(loaded.schedule, start, end) if s.user == str(feed.owner_id)
        ]
    mine.sort(key=lambda item: (item[0].start, item[1]))
    return ical.render(
        [s for s, _ in mine],
        calendar_name=f"{row['name'] or row['email']}: on call",
        uid_namespace=f"user:{feed.owner_id}",
        now=now,
        names=await _names(conn, [s for s, _ in mine]),
        schedules=[label for _, label in mine],
    )


async def _names(conn: db.Connection, found: list[Shift]) -> dict[str, str]:
    ids = list({uuid.UUID(s.user) for s in found})
    return {str(r["id"]): r["name"] for r in await conn.fetch(SELECT_NAMES, ids)}
