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

from engine import queue_inspect, registry
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
    issues: list[str] = []
    components: dict[str, dict[str, Any]] = {
        "database": {
            "status": Level.OPERATIONAL if db_ok else Level.DOWN,
            "reachable": db_ok,
            "round_trip_ms": db_ms,
        },
        "redis": {
            "status": Level.OPERATIONAL if redis_ok else Level.DOWN,
            "reachable": redis_ok,
            "round_trip_ms": redis_ms,
        },
        "workers": {"status": Level.UNKNOWN, "alive": None},
        "queue": {
            "status": Level.UNKNOWN,
            "queued": None,
            "in_progress": None,
            "retrying": None,
            "oldest_queued_seconds": None,
        },
    }
    if not redis_ok:
        issues.append("redis is unreachable: no alert can be accepted")
    if not db_ok:
        issues.append("database is unreachable: alerts are accepted and wait in the queue")
    if redis_ok:
        try:
            alive, load = await asyncio.wait_for(
                asyncio.gather(
                    registry.count_alive(redis, registry.WORKERS),
                    queue_inspect.load(redis, settings.queue_name),
                ),
                limit,
            )
        except Exception:  # Redis went away between the ping and now
            issues.append("redis did not answer the queue checks in time")
        else:
            components["workers"] = {"status": Level.OPERATIONAL if alive else Level.DOWN, "alive": alive}
            if not alive:
                issues.append("no worker is alive: alerts are accepted and wait in the queue")
            lagging = (load.oldest_queued_seconds or 0) > settings.status_max_queue_age
            components["queue"] = {
                "status": Level.DEGRADED if lagging else Level.OPERATIONAL,
                "queued": load.queued,
                "in_progress": load.in_progress,
                "retrying": load.retrying,
                "oldest_queued_seconds": load.oldest_queued_seconds,
            }
            if lagging:
                issues.append(f"the oldest queued job has waited {load.oldest_queued_seconds:.0f} s")
    if not redis_ok:
        overall = Level.DOWN
    elif issues:
        overall = Level.DEGRADED
    else:
        overall = Level.OPERATIONAL
    return {
        "status": overall,
        "issues": issues,
        "checked_at": datetime.now(UTC),
        "components": components,
    }
