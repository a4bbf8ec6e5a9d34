"""System status: is each part of Monoduty working, and what does that mean for alerts?

The rules, from what an operator cares about (an accepted alert is one that will be delivered):

- Redis unreachable            -> ``down``: inbound alerts cannot be queued, so none is accepted.
- PostgreSQL unreachable       -> ``degraded``: alerts for known webhooks are still accepted (tokens
                                  are resolved from the Redis cache) and wait in the queue; the
                                  management API and deliveries wait for the database.
- no worker alive              -> ``degraded``: alerts are accepted and wait in the queue.
- oldest queued job waiting longer than ``status_max_queue_age`` -> ``degraded``: workers lag.
- otherwise                    -> ``operational``.

Every check has a short timeout (``status_timeout``), so the answer comes quickly when something
hangs. Answers carry counts and timings only: no host name, DSN or error text.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg
from redis.asyncio import Redis

from engine import queue_inspect
from engine.observability import presence
from engine.settings import Settings


class Level(StrEnum):
    """Overall and per-component status; schema.sql health_samples.status holds the overall one
    (never ``unknown``)."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"  # a component that cannot be checked while another is down


async def _timed(check: Any, seconds: float) -> tuple[bool, float | None]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, seconds)
    except Exception:  # timeout, refused, reset, auth...: the reason stays out of a public answer
        return False, None
    return True, round((time.perf_counter() - started) * 1000, 2)


async def _ping_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


async def database_reachable(pool: asyncpg.Pool, seconds: float) -> tuple[bool, float | None]:
    """(reachable, round trip in ms) of one ``SELECT 1``, given up after ``seconds``."""
    return await _timed(_ping_database(pool), seconds)


async def redis_reachable(redis: Redis, seconds: float) -> tuple[bool, float | None]:
    """(reachable, round trip in ms) of one ``PING``, given up after ``seconds``."""
    return await _timed(redis.ping(), seconds)


async def check(pool: asyncpg.Pool, redis: Redis, settings: Settings) -> dict[str, Any]:
    """The status document: overall level, the issues behind it, and each component."""
    limit = settings.status_timeout
    (db_ok, db_ms), (redis_ok, redis_ms) = await asyncio.gather(
        database_reachable(pool, limit), redis_reachable(redis, limit)
    )
    components = {"database": _store(db_ok, db_ms), "redis": _store(redis_ok, redis_ms)}
    issues: list[str] = []
    if not redis_ok:
        issues.append("redis is unreachable: no alert can be accepted")
    if not db_ok:
        issues.append("database is unreachable: alerts are accepted and wait in the queue")
    if redis_ok:
        workers, queue_ = await _work(redis, settings, issues)
    else:
        workers, queue_ = dict(_UNKNOWN_WORKERS), dict(_UNKNOWN_QUEUE)
    components |= {"workers": workers, "queue": queue_}
    return {
        "status": _overall(redis_ok, issues),
        "issues": issues,
        "checked_at": datetime.now(UTC),
        "components": components,
    }


# What is shown for a part that cannot be checked (Redis, which holds both, is away).
_UNKNOWN_WORKERS: dict[str, Any] = {"status": Level.UNKNOWN, "alive": None}
_UNKNOWN_QUEUE: dict[str, Any] = {
    "status": Level.UNKNOWN,
    "queued": None,
    "in_progress": None,
    "retrying": None,
    "oldest_queued_seconds": None,
}


def _store(reachable: bool, round_trip_ms: float | None) -> dict[str, Any]:
    """A storage component: PostgreSQL or Redis."""
    status = Level.OPERATIONAL if reachable else Level.DOWN
    return {"status": status, "reachable": reachable, "round_trip_ms": round_trip_ms}


async def _work(redis: Redis, settings: Settings, issues: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workers and queue components, read from Redis; what is wrong is added to ``issues``."""
    try:
        alive, load = await asyncio.wait_for(
            asyncio.gather(
                presence.count_alive(redis, presence.WORKERS),
                queue_inspect.load(redis, settings.queue_name),
            ),
            settings.status_timeout,
        )
    except Exception:  # Redis went away between the ping and now
        issues.append("redis did not answer the queue checks in time")
        return dict(_UNKNOWN_WORKERS), dict(_UNKNOWN_QUEUE)
    workers = {"status": Level.OPERATIONAL if alive else Level.DOWN, "alive": alive}
    if not alive:
        issues.append("no worker is alive: alerts are accepted and wait in the queue")
    lagging = (load.oldest_queued_seconds or 0) > settings.status_max_queue_age
    queue_ = {
        "status": Level.DEGRADED if lagging else Level.OPERATIONAL,
        "queued": load.queued,
        "in_progress": load.in_progress,
        "retrying": load.retrying,
        "oldest_queued_seconds": load.oldest_queued_seconds,
    }
    if lagging:
        issues.append(f"the oldest queued job has waited {load.oldest_queued_seconds:.0f} s")
    return workers, queue_


def _overall(redis_ok: bool, issues: list[str]) -> Level:
    """Down without Redis (nothing can be accepted), degraded with any other issue."""
    if not redis_ok:
        return Level.DOWN
    return Level.DEGRADED if issues else Level.OPERATIONAL
