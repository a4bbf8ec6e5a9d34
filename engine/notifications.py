"""The in-app inbox: notifications for a webhook's owner, and reading them.

Notifications are written by the step that causes them, on the caller's connection, so that they
commit (or roll back) with it: an alert stored, a delivery failed for good, a webhook paused.
A rate-limit burst is the exception: it happens outside any transaction, so
``notify_once_per_burst`` lets only the first request of a burst through, with a Redis key.
Every read and change is scoped to the caller: another user's id is 404.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg
from redis.asyncio import Redis

from engine import db, limits, validate
from engine.errors import NotFound, ValidationError


class NotificationKind(StrEnum):
    ALERT_RECEIVED = "alert_received"
    DELIVERY_FAILED = "delivery_failed"
    WEBHOOK_PAUSED = "webhook_paused"
    RATE_LIMITED = "rate_limited"
    MAINTENANCE_ENDING = "maintenance_ending"  # to a window's team, 10 minutes before its end


DEFAULT_PAGE = 50
MAX_PAGE = 100
BURST_PREFIX = "monoduty:notify-burst:"

COLUMNS = "id, kind, title, body, webhook_id, alert_id, created_at, read_at"

INSERT = """
INSERT INTO notifications (id, user_id, kind, title, body, webhook_id, alert_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
# One row from the delivery itself, so the caller's transaction needs no extra round trip.
INSERT_DELIVERY_FAILED = """
INSERT INTO notifications (id, user_id, kind, title, body, webhook_id, alert_id)
SELECT $2, a.user_id, 'delivery_failed',
    left(CASE WHEN a.is_test THEN 'Test delivery failed: ' ELSE 'Delivery failed: ' END || a.title, 300),
    d.channel || ' to ' || d.target || ' failed after ' || d.attempts || ' attempt(s) on '
        || w.name || coalesce(': ' || d.last_error, ''),
    a.webhook_id, a.id
FROM deliveries d JOIN alerts a ON a.id = d.alert_id JOIN webhooks w ON w.id = a.webhook_id
WHERE d.id = $1
"""
# Newest first; $2/$3 is the keyset of the last row of the previous page (NULL for the first).
PAGE = f"""
SELECT {COLUMNS} FROM notifications
WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
  AND (NOT $4 OR read_at IS NULL)
ORDER BY created_at DESC, id DESC
LIMIT $5
"""
UNREAD_COUNT = "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL"
UNREAD_UP_TO = """
SELECT count(*) FROM (SELECT 1 FROM notifications WHERE user_id = $1 AND read_at IS NULL LIMIT $2) AS unread
"""
MARK_READ = f"""
UPDATE notifications SET read_at = coalesce(read_at, now())
WHERE id = $1 AND user_id = $2
RETURNING {COLUMNS}
"""
MARK_ALL_READ = "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL"


@dataclass(frozen=True)
class PageRequest:
    """What GET /api/notifications asked for."""

    limit: int = DEFAULT_PAGE
    unread_only: bool = False
    after: tuple[datetime, uuid.UUID] | None = None


async def create(
    conn: db.Connection,
    user_id: uuid.UUID,
    kind: NotificationKind,
    title: str,
    body: str = "",
    *,
    webhook_id: uuid.UUID | None = None,
    alert_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Add a notification to the user's inbox (in the caller's transaction, if any)."""
    notification_id = uuid.uuid4()
    await conn.execute(
        INSERT, notification_id, user_id, kind.value, title[:300], body[:2000], webhook_id, alert_id
    )
    return notification_id


async def delivery_failed(conn: db.Connection, delivery_id: uuid.UUID) -> None:
    """Tell the owner that a delivery failed for good (call inside the status change's transaction)."""
    await conn.execute(INSERT_DELIVERY_FAILED, delivery_id, uuid.uuid4())


async def notify_once_per_burst(
    redis: Redis,
    pool: asyncpg.Pool,
    user_id: uuid.UUID | str,
    webhook_id: uuid.UUID | str,
    kind: NotificationKind | str,
    title: str,
    body: str,
    window_seconds: float,
) -> bool:
    """Create one notification per burst: the first call in ``window_seconds`` wins, others do nothing.

    SET NX EX makes the decision atomic across API processes. Returns True when this call notified.
    """
    key = f"{BURST_PREFIX}{user_id}:{webhook_id}:{kind}"
    if not await redis.set(key, "1", nx=True, px=max(1, round(window_seconds * 1000))):
        return False
    try:
        async with pool.acquire() as conn:
            await create(
                conn,
                uuid.UUID(str(user_id)),
                NotificationKind(kind),
                title,
                body,
                webhook_id=uuid.UUID(str(webhook_id)),
            )
    except BaseException:
        # Not written: let the next request of the burst try again rather than lose the notice.
        await redis.delete(key)
        raise
    return True


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, lambda: NotFound("notification not found", code="NOTIFICATION_NOT_FOUND"))


def encode_cursor(created_at: datetime, notification_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{notification_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, ident = raw.partition("|")
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None:
            raise ValueError("naive")
        # In UTC, as PostgreSQL will read it: year 1 at +14:00 is year 0 there (OverflowError).
        return created_at.astimezone(UTC), uuid.UUID(ident)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor is not one this API gave out", field="cursor") from None


def parse_page(query: Mapping[str, str]) -> PageRequest:
    """Query parameters of the list: ``limit`` (1-100), ``unread`` (true/false), ``cursor``."""
    limit = DEFAULT_PAGE
    if "limit" in query:
        limit = limits.whole_number(query["limit"], "limit", 1, MAX_PAGE)
    unread = query.get("unread", "false").lower()
    if unread not in ("true", "false", "1", "0"):
        raise ValidationError("unread must be true or false", field="unread")
    cursor = query.get("cursor")
    return PageRequest(
        limit=limit,
        unread_only=unread in ("true", "1"),
        after=_decode_cursor(cursor) if cursor else None,
    )


async def list_page(
    conn: db.Connection, user_id: uuid.UUID, page: PageRequest
) -> tuple[list[asyncpg.Record], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    created_at, after_id = page.after if page.after else (None, None)
    rows = await conn.fetch(PAGE, user_id, created_at, after_id, page.unread_only, page.limit + 1)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return rows, cursor


async def unread_count(conn: db.Connection, user_id: uuid.UUID) -> int:
    return await conn.fetchval(UNREAD_COUNT, user_id)


async def unread_up_to(conn: db.Connection, user_id: uuid.UUID, cap: int) -> int:
    """The unread count, counted no further than ``cap``: a badge ("99+") costs the same with a
    backlog of ten thousand."""
    return await conn.fetchval(UNREAD_UP_TO, user_id, cap)


async def mark_read(conn: db.Connection, user_id: uuid.UUID, notification_id: uuid.UUID) -> asyncpg.Record:
    """Mark one read (reading it again keeps the first read time)."""
    row = await conn.fetchrow(MARK_READ, notification_id, user_id)
    if row is None:
        raise NotFound("notification not found", code="NOTIFICATION_NOT_FOUND")
    return row


async def mark_all_read(conn: db.Connection, user_id: uuid.UUID) -> int:
    """Mark every unread notification read; returns how many changed."""
    status = await conn.execute(MARK_ALL_READ, user_id)
    return int(status.split()[-1])
