"""Heartbeats through the API: made, read, changed, paused, resumed and deleted within a webhook.

A heartbeat is its webhook's, so its webhook's team roles apply: a viewer reads it, an admin does
the rest; to anyone outside the team neither exists (404). Its ping URL holds its own token (192
random bits), kept as a webhook's is: in PostgreSQL, where the ping route finds it through a cache
keyed by a hash of it (engine.heartbeats.pings), and shown again on every read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from engine import db, validate, webhooks
from engine.errors import Conflict, NotFound, ValidationError
from engine.heartbeats import HeartbeatStatus, pings, store
from engine.heartbeats.state import State, on_pause, on_reschedule, on_resume, timing_of
from engine.heartbeats.timing import Timing, parse_cron, parse_duration, parse_time_zone
from engine.teams import Role
from engine.validate import UNSET, Unset

MAX_PER_WEBHOOK = 100
RECENT_PINGS = 100

SELECT_OF_WEBHOOK = f"""
SELECT {store.COLUMNS} FROM heartbeats h WHERE h.webhook_id = $1 ORDER BY h.created_at, h.id
"""
SELECT_ONE = f"SELECT {store.COLUMNS} FROM heartbeats h WHERE h.id = $1 AND h.webhook_id = $2"
LOCK_ONE = SELECT_ONE + " FOR UPDATE"
# The webhook's row orders two creates at once, so neither passes the cap the other fills.
LOCK_WEBHOOK = "SELECT id FROM webhooks WHERE id = $1 FOR NO KEY UPDATE"
COUNT = "SELECT count(*) FROM heartbeats WHERE webhook_id = $1"
INSERT = f"""
INSERT INTO heartbeats AS h (id, webhook_id, name, token, period_seconds, cron, time_zone, grace_seconds,
    created_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
RETURNING {store.COLUMNS}
"""
REDEFINE = """
UPDATE heartbeats SET name = $2, period_seconds = $3, cron = $4, time_zone = $5, grace_seconds = $6,
    updated_at = $7
WHERE id = $1
"""
DELETE = "DELETE FROM heartbeats WHERE id = $1 AND webhook_id = $2 RETURNING token"
LAST_PINGS = """
SELECT DISTINCT ON (heartbeat_id) heartbeat_id, kind, received_at, method, source_ip, user_agent
FROM heartbeat_pings WHERE heartbeat_id = ANY($1::uuid[])
ORDER BY heartbeat_id, id DESC
"""
RECENT = """
SELECT kind, received_at, method, source_ip, user_agent, body FROM heartbeat_pings
WHERE heartbeat_id = $1 ORDER BY id DESC LIMIT $2
"""


@dataclass(frozen=True)
class HeartbeatInput:
    """A create or an update; UNSET is a field left out (an update keeps its value)."""

    name: str | Unset | None = UNSET
    period: object = UNSET
    cron: object = UNSET
    time_zone: object = UNSET
    grace: object = UNSET


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, _not_found)


def _not_found() -> NotFound:
    return NotFound("heartbeat not found", code="HEARTBEAT_NOT_FOUND")


def _timing(wanted: HeartbeatInput, current: Timing | None, minimum: int) -> Timing:
    """The schedule a request asks for: a period or a cron (one replaces the other), its zone, a grace."""
    if wanted.period is not UNSET and wanted.cron is not UNSET:
        raise ValidationError("give either period or cron, not both", field="cron")
    if wanted.period is not UNSET:
        if wanted.time_zone is not UNSET:
            raise ValidationError("time_zone is for a cron heartbeat only", field="time_zone")
        period: int | None = parse_duration(wanted.period, "period", minimum=minimum)
        cron = None
        zone = "UTC"
    elif wanted.cron is not UNSET:
        period, cron = None, parse_cron(wanted.cron)
        zone = current.time_zone if current is not None and current.cron is not None else "UTC"
    elif current is not None:
        period, cron, zone = current.period_seconds, current.cron, current.time_zone
    else:
        wanted_one = 'period (such as "5m") or cron (such as "0 3 * * *") is required'
        raise ValidationError(wanted_one, field="period")
    if wanted.time_zone is not UNSET:
        if cron is None:
            raise ValidationError("time_zone is for a cron heartbeat only", field="time_zone")
        zone = parse_time_zone(wanted.time_zone)
    if wanted.grace is not UNSET:
        grace = parse_duration(wanted.grace, "grace", minimum=minimum)
    elif current is not None:
        grace = current.grace_seconds
    else:
        raise ValidationError('grace is required (such as "10m")', field="grace")
    return Timing(period, cron, zone, grace)


def _name(value: str | Unset | None, *, required: bool) -> str | None:
    return validate.text(value, "name", required=required, min_length=1, max_length=100)


async def list_heartbeats(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID
) -> tuple[list[asyncpg.Record], dict[uuid.UUID, asyncpg.Record]]:
    """The webhook's heartbeats (a viewer of its team may) and the last ping of each."""
    await webhooks.get_webhook(conn, user_id, webhook_id)
    rows = await conn.fetch(SELECT_OF_WEBHOOK, webhook_id)
    last = await conn.fetch(LAST_PINGS, [r["id"] for r in rows])
    return rows, {r["heartbeat_id"]: r for r in last}


async def get_heartbeat(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID, heartbeat_id: uuid.UUID
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """One heartbeat and its last 100 pings, newest first (a viewer of its team may)."""
    await webhooks.get_webhook(conn, user_id, webhook_id)
    row = await conn.fetchrow(SELECT_ONE, heartbeat_id, webhook_id)
    if row is None:
        raise _not_found()
    return row, await conn.fetch(RECENT, heartbeat_id, RECENT_PINGS)


async def create_heartbeat(
    conn: db.Connection,
    user_id: uuid.UUID,
    webhook_id: uuid.UUID,
    wanted: HeartbeatInput,
    now: datetime,
    *,
    min_period: int,
) -> asyncpg.Record:
    """A new heartbeat on the webhook (an admin of its team may), ``new`` until its first ping."""
    await webhooks.get_webhook(conn, user_id, webhook_id, Role.ADMIN)
    name = _name(wanted.name, required=True)
    timing = _timing(wanted, None, min_period)
    async with conn.transaction():
        await conn.execute(LOCK_WEBHOOK, webhook_id)
        if await conn.fetchval(COUNT, webhook_id) >= MAX_PER_WEBHOOK:
            raise Conflict(f"a webhook has at most {MAX_PER_WEBHOOK} heartbeats", code="HEARTBEAT_LIMIT")
        row = await conn.fetchrow(
            INSERT,
            uuid.uuid4(),
            webhook_id,
            name,
            webhooks.new_token(),
            timing.period_seconds,
            timing.cron,
            timing.time_zone,
            timing.grace_seconds,
            user_id,
            now,
        )
    assert row is not None
    return row


async def _locked(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID, heartbeat_id: uuid.UUID
) -> asyncpg.Record:
    """The heartbeat, locked, for an admin of its webhook's team (call inside a transaction)."""
    await webhooks.get_webhook(conn, user_id, webhook_id, Role.ADMIN)
    row = await conn.fetchrow(LOCK_ONE, heartbeat_id, webhook_id)
    if row is None:
        raise _not_found()
    return row


async def update_heartbeat(
    conn: db.Connection,
    user_id: uuid.UUID,
    webhook_id: uuid.UUID,
    heartbeat_id: uuid.UUID,
    wanted: HeartbeatInput,
    now: datetime,
    *,
    min_period: int,
) -> asyncpg.Record:
    """Change what is given; a new period, cron or grace counts from now."""
    async with conn.transaction():
        row = await _locked(conn, user_id, webhook_id, heartbeat_id)
        name = _name(wanted.name, required=False) or row["name"]
        current = timing_of(row)
        timing = _timing(wanted, current, min_period)
        await conn.execute(
            REDEFINE,
            heartbeat_id,
            name,
            timing.period_seconds,
            timing.cron,
            timing.time_zone,
            timing.grace_seconds,
            now,
        )
        state = State.of(row)
        if timing != current:
            state = on_reschedule(timing, state, now)
        return await store.save(conn, heartbeat_id, state)


async def pause_heartbeat(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID, heartbeat_id: uuid.UUID
) -> asyncpg.Record:
    """Stop checking it (its pings are still kept); an open incident stays open."""
    async with conn.transaction():
        row = await _locked(conn, user_id, webhook_id, heartbeat_id)
        if row["status"] == HeartbeatStatus.PAUSED:
            return row
        return await store.save(conn, heartbeat_id, on_pause(State.of(row)))


async def resume_heartbeat(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID, heartbeat_id: uuid.UUID, now: datetime
) -> asyncpg.Record:
    """Check it again from ``now`` (engine.heartbeats.state.on_resume)."""
    async with conn.transaction():
        row = await _locked(conn, user_id, webhook_id, heartbeat_id)
        return await store.save(conn, heartbeat_id, on_resume(timing_of(row), State.of(row), now))


async def delete_heartbeat(
    conn: db.Connection, redis: Redis, user_id: uuid.UUID, webhook_id: uuid.UUID, heartbeat_id: uuid.UUID
) -> None:
    """Delete it with its pings; its ping URL answers 404 from then on. Its incident stays."""
    await webhooks.get_webhook(conn, user_id, webhook_id, Role.ADMIN)
    token = await conn.fetchval(DELETE, heartbeat_id, webhook_id)
    if token is None:
        raise _not_found()
    await pings.forget_token(redis, token)
