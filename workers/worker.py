"""Building and running an arq worker tuned for alert delivery.

arq's defaults (poll every 0.5 s, 10 jobs at once, 5 min job timeout, hourly health check) suit
batch work, not paging someone: each hop would wait up to half a second, a 50 ms provider would
cap a worker at ~20 sends/s, and a job whose worker died would wait five minutes to run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from arq import func
from arq.worker import Worker, async_check_health
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import db, metrics, queue, registry
from engine.channels import build_channels
from engine.channels.outbox import OutboxChannel
from engine.settings import Settings
from workers import health, jobs, outages
from workers.channel_slots import ChannelSlots

log = logging.getLogger("monoduty.worker")

HEALTH_CHECK_SECONDS = 30
METRICS_FLUSH_SECONDS = 1.0
# How long a job's in-progress claim outlives its timeout (arq: 10 s). It need only cover the Redis
# round trips around the timeout; a job that does run twice is safe (every step is idempotent).
IN_PROGRESS_MARGIN_SECONDS = 5.0


class ResilientWorker(Worker):
    """A worker that rides out a lost Redis connection instead of exiting."""

    _redis_down_since: float | None = None
    _started_at: datetime | None = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # A dead worker's job re-runs once its claim lapses: after the job timeout + our margin.
        longest = max(f.timeout_s or self.job_timeout_s or 0 for f in self.functions.values())
        self.in_progress_timeout_s = longest + IN_PROGRESS_MARGIN_SECONDS

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if self._redis_down_since is None:
                self._redis_down_since = time.monotonic()
            # Redis may come back empty (no persistence, a failover): say we are alive as soon as it
            # answers, not at the next health-check interval, or `worker --check` and /api/status
            # would count no worker for up to 30 s.
            self._last_health_check = 0
            # Back off a little, then poll again; redis-py reconnects on the next command.
            log.warning("redis unreachable, retrying: %s", type(exc).__name__)
            await asyncio.sleep(1.0)
        else:
            if self._redis_down_since is not None:
                log.info("redis reachable again after %.1fs", time.monotonic() - self._redis_down_since)
                self._redis_down_since = None

    async def record_health(self) -> None:
        # arq's health-check key is one per queue; our registry counts each live worker.
        due = time.time() - self._last_health_check >= self.health_check_interval
        await super().record_health()
        if due:
            self._started_at = self._started_at or datetime.now(UTC)
            info = {"started_at": self._started_at.isoformat(), "queue": self.queue_name}
            await registry.beat(self.pool, registry.WORKERS, registry.this_process(), info)

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await registry.leave(self.pool, registry.WORKERS, registry.this_process())
                if await registry.count_alive(self.pool, registry.WORKERS):
                    # arq deletes its health-check key on close, but the key is shared by every
                    # worker of the queue: while others run, leave it for them to keep fresh.
                    self.health_check_key += ":closed"
        await super().close()


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    assert settings.database_url
    ctx["pool"] = await db.create_pool(settings.database_url, max_size=20)
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    ctx["session"] = aiohttp.ClientSession(timeout=timeout)
    ctx["channels"] = build_channels(
        settings, ctx["session"], outbox_factory=lambda kind: OutboxChannel(kind, ctx["pool"])
    )
    ctx["metrics"] = metrics.MetricsBuffer()
    ctx["channel_slots"] = ChannelSlots(settings.channel_concurrency)
    ctx["metrics_task"] = asyncio.create_task(_flush_metrics(ctx))


async def _flush_metrics(ctx: dict[str, Any]) -> None:
    """Hand this worker's counts to Redis about once a second (see engine.metrics)."""
    while True:
        await asyncio.sleep(METRICS_FLUSH_SECONDS)
        try:
            await ctx["metrics"].flush(ctx["redis"])
        except Exception as exc:  # Redis down: keep counting, flush later
            log.warning("metrics flush failed: %s", type(exc).__name__)


async def _shutdown(ctx: dict[str, Any]) -> None:
    if "metrics_task" in ctx:
        ctx["metrics_task"].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ctx["metrics_task"]
        with contextlib.suppress(Exception):
            await ctx["metrics"].flush(ctx["redis"])
    if "session" in ctx:
        await ctx["session"].close()
    if "pool" in ctx:
        await ctx["pool"].close()


def build_worker(settings: Settings, *, burst: bool = False, **overrides: Any) -> Worker:
    """A worker for our two jobs; ``overrides`` go to arq's Worker (tests use burst, poll_delay)."""
    assert settings.redis_url
    # arq counts crashes, our retries and tries that waited for the database alike; our own attempt
    # cap (in Postgres, counted before each send) is the real one.
    max_tries = settings.max_attempts + 5 + outages.WAIT_TRIES
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
        "cron_jobs": health.cron_jobs(timeout=settings.job_timeout),
        # SIGTERM: stop taking jobs, give running ones this long, then cancel them (arq re-queues them).
        "job_completion_wait": settings.shutdown_grace,
    }
    options.update(overrides)
    return ResilientWorker(**options)


def check_health(settings: Settings) -> int:
    """arq's health check on our queue: 0 if a worker recorded its health in the last interval, else 1."""
    assert settings.redis_url
    redis_settings = queue.redis_settings(settings.redis_url)
    redis_settings.conn_retries = 0  # a supervisor asks again; it must not wait a minute for an answer
    try:
        return asyncio.run(async_check_health(redis_settings, None, settings.queue_name))
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        log.warning("health check failed: redis unreachable (%s)", type(exc).__name__)
        return 1
