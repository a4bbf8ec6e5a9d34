"""Building and running an arq worker tuned for alert delivery.

arq's defaults (poll every 0.5 s, 10 jobs at once, 5 min job timeout, hourly health check) suit
batch work, not paging someone: each hop would wait up to half a second, a 50 ms provider would
cap a worker at ~20 sends/s, and a job whose worker died would wait five minutes to run again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from arq import func
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import db, queue
from engine.channels import build_channels
from engine.channels.outbox import OutboxChannel
from engine.settings import Settings
from workers import jobs

log = logging.getLogger("monoduty.worker")

HEALTH_CHECK_SECONDS = 30


class ResilientWorker(Worker):
    """A worker that rides out a lost Redis connection instead of exiting."""

    _redis_down_since: float | None = None

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # Back off a little, then poll again; redis-py reconnects on the next command.
            log.warning("redis unreachable, retrying: %s", type(exc).__name__)
            await asyncio.sleep(1.0)


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    assert settings.database_url
    ctx["pool"] = await db.create_pool(settings.database_url, max_size=20)
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    ctx["session"] = aiohttp.ClientSession(timeout=timeout)
    ctx["channels"] = build_channels(
        settings, ctx["session"], outbox_factory=lambda kind: OutboxChannel(kind, ctx["pool"])
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    if "session" in ctx:
        await ctx["session"].close()
    if "pool" in ctx:
        await ctx["pool"].close()


def build_worker(settings: Settings, *, burst: bool = False, **overrides: Any) -> Worker:
    """A worker for our two jobs; ``overrides`` go to arq's Worker (tests use burst, poll_delay)."""
    assert settings.redis_url
    # arq counts crashes and our retries alike; our own attempt cap (in Postgres) is the real one.
    max_tries = settings.max_attempts + 5
    options: dict[str, Any] = {
        "functions": [
            func(jobs.process_alert, name=queue.PROCESS_ALERT, max_tries=max_tries),
            func(jobs.deliver, name=queue.DELIVER, max_tries=max_tries),
        ],
        "redis_settings": queue.redis_settings(settings.redis_url),
        "job_serializer": queue.serialize,
        "job_deserializer": queue.deserialize,
        "queue_name": settings.queue_name,
        "ctx": {"settings": settings},
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "burst": burst,
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.worker_poll_delay,
        "job_timeout": settings.job_timeout,
        "keep_result": 3600,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "handle_signals": not burst,
    }
    options.update(overrides)
    return ResilientWorker(**options)
