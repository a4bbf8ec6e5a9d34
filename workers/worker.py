"""Building and running an arq worker tuned for alert delivery.

arq's defaults (poll every 0.5 s, 10 jobs at once, 5 min job timeout, hourly health check) suit
batch work, not paging someone: each hop would wait up to half a second, a 50 ms provider would
cap a worker at ~20 sends/s, and a job whose worker died would wait five minutes to run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from arq import func
from arq.connections import log_redis_info
from arq.constants import health_check_key_suffix, in_progress_key_prefix
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from arq.utils import poll
from arq.worker import Worker
from redis.exceptions import RedisError, ResponseError, WatchError

from engine import db, queue
from engine.channels import egress
from engine.channels.email import EmailChannel
from engine.channels.outbox import OutboxChannel
from engine.channels.registry import build_channels
from engine.channels.smtp_pool import SmtpConnections
from engine.clock import Clock, DatabaseClock, queue_ms
from engine.errors import STORAGE_DOWN
from engine.observability import metrics, periodic, presence
from engine.settings import Settings
from workers import digests, escalations, health, heartbeats, jobs, maintenance, outages, stranded
from workers.channel_slots import ChannelSlots

log = logging.getLogger("monoduty.worker")

# The worker writes arq's health-check key this often, and the key outlives three missed writes.
# (arq's own TTL is the interval + 1 s: one poll slower than a second, as under load or right after
# an outage, and `worker --check` called a busy worker dead.)
HEALTH_CHECK_SECONDS = 10
HEALTH_KEY_TTL_SECONDS = 31
METRICS_FLUSH_SECONDS = 1.0
# The worker re-measures its clock's offset to PostgreSQL's this often (engine.clock): a clock that
# drifts or is stepped is corrected within a minute.
CLOCK_SYNC_SECONDS = 60.0
# How long a job's in-progress claim outlives its timeout (arq: 10 s). It need only cover the Redis
# round trips around the timeout; a job that does run twice is safe (every step is idempotent).
IN_PROGRESS_MARGIN_SECONDS = 5.0
# After a failed poll the worker waits this long, doubling up to the cap while Redis stays away:
# short, because a reset connection (the commonest fault) is usually fine on the very next try.
BACKOFF_FIRST_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
# arq stops the poll loop with one cancel of its task; should a library ever swallow it (redis-py did,
# engine.queue), the cancel is repeated this often until the loop has ended.
RECANCEL_SECONDS = 0.5
# At shutdown, the Redis steps (leaving the registry, the last metrics) get this long in all: with
# Redis frozen each command would wait its own timeout, and the worker must exit within its grace.
CLOSE_REDIS_SECONDS = 3.0

# Anything Redis can raise (a reset, a stall, a WatchError from a reset inside a WATCH, a replica's
# READONLY, LOADING after a restart...): the worker outlives all of them, because a worker that
# exits leaves its queue to nobody. Anything else is a bug and still stops it.
REDIS_TROUBLE: tuple[type[BaseException], ...] = (RedisError, *STORAGE_DOWN)


# A burst worker (tests, one-off runs) ends once no job is due within this long (retries included).
BURST_HORIZON_MS = 5_000


class ResilientWorker(Worker):
    """arq's worker, made to ride out any Redis fault and to come back at full speed and capacity.

    Where arq 0.28 lets a Redis error escape, and what happens here instead:
    - the poll (ZRANGEBYSCORE), the claim of a job and the heartbeat/cron: the error ends that poll;
      the worker backs off briefly and polls again (``_poll_iteration``);
    - the claim (``start_jobs``): arq took a concurrency slot first and lost it for good on such an
      error; here the slot always comes back;
    - a job's own Redis steps (reading it, recording its outcome, both in ``run_job``): arq left the
      task failed and the poll loop re-raised one such task per poll, for up to a minute after an
      outage, skipping the heartbeat each time; here the error is logged and the job's claim is
      dropped once Redis answers again, so it runs again at once instead of after its timeout;
    - shutdown (``close``): the database pool and the metrics still close with Redis away.
    """

    _redis_down_since: float | None = None
    _started_at: datetime | None = None

    def __init__(self, *, redis_url: str, **options: Any) -> None:
        super().__init__(**options)
        self.redis_url = redis_url
        # A dead worker's job re-runs once its claim lapses: after the job timeout + our margin.
        longest = max(f.timeout_s or self.job_timeout_s or 0 for f in self.functions.values())
        self.in_progress_timeout_s = longest + IN_PROGRESS_MARGIN_SECONDS
        self._backoff = 0.0
        # Jobs claimed here whose run met a Redis error: job id -> when claimed (monotonic).
        self._lost_claims: dict[str, float] = {}

    async def main(self) -> None:
        """arq's main, except that Redis failing during start-up does not end the worker.

        arq's own main logs Redis's INFO right after connecting, and a Redis lost at that moment
        ended the process; here that line is skipped instead. What follows is arq 0.28's main.
        """
        if self._pool is None:
            # Ours, not arq's create_pool: every Redis call bounded (engine.queue.connect).
            self._pool = await queue.connect(self.redis_url, queue_name=self.queue_name)
        log.info("Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions))
        try:
            await log_redis_info(self.pool, log.info)
        except REDIS_TROUBLE as exc:
            log.warning("redis unreachable at start-up (%s); polling until it answers", type(exc).__name__)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        async for _ in poll(self.poll_delay_s):
            await self._poll_iteration()
            if self.burst:
                if 0 <= self.max_burst_jobs <= self._jobs_started():
                    await asyncio.gather(*self.tasks.values())
                    return
                # Nothing due soon: a job deferred further (an escalation step's or a heartbeat's
                # wake-up minutes away) is a later worker's, not a reason for a burst to wait.
                due = await self.pool.zcount(self.queue_name, "-inf", queue_ms() + BURST_HORIZON_MS)
                if due == 0:
                    await asyncio.gather(*self.tasks.values())
                    return

    async def _poll_iteration(self) -> None:
        try:
            if self._lost_claims:
                await self._release_lost_claims()
            await super()._poll_iteration()
        except REDIS_TROUBLE as exc:
            if self._redis_down_since is None:
                self._redis_down_since = time.monotonic()
                # The type only: a driver's message may name the host and the user.
                log.warning("redis unreachable, retrying: %s", type(exc).__name__)
            # Redis may come back empty (no persistence, a failover): say we are alive as soon as it
            # answers, not at the next health-check interval, or `worker --check` and /api/status
            # would count no worker meanwhile.
            self._last_health_check = 0
            self._backoff = min(BACKOFF_CAP_SECONDS, max(BACKOFF_FIRST_SECONDS, self._backoff * 2))
            await asyncio.sleep(self._backoff)  # redis-py reconnects on the next command
        else:
            self._backoff = 0.0
            if self._redis_down_since is not None:
                log.info("redis reachable again after %.1fs", time.monotonic() - self._redis_down_since)
                self._redis_down_since = None

    async def _wait_for_tasks_to_complete(self, signum: signal.Signals) -> None:
        await super()._wait_for_tasks_to_complete(signum)
        await self._until_main_ends()

    def handle_sig(self, signum: signal.Signals) -> None:
        super().handle_sig(signum)
        if self.main_task is not None:
            self.loop.create_task(self._until_main_ends())

    async def _until_main_ends(self) -> None:
        """Cancel the poll loop again until it has ended: a worker told to stop must stop."""
        main = self.main_task
        while main is not None and not main.done():
            await asyncio.wait([main], timeout=RECANCEL_SECONDS)
            if not main.done():
                log.warning("the poll loop outlived its cancel; cancelling it again")
                main.cancel()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's, except that the concurrency slot taken for a job comes back whatever Redis does."""
        for raw_id in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            started = False
            try:
                started = await self._claim(raw_id.decode())
            finally:
                if not started:
                    self.job_counter -= 1
                    self.sem.release()

    async def _claim(self, job_id: str) -> bool:
        """Mark ``job_id`` in progress and start it; False when it is not ours to run now."""
        running = self.tasks.get(job_id)
        if running is not None and not running.done():
            # Running here already, taken from a primary that Sentinel has since replaced: the new
            # primary still queues it, unclaimed. arq keys its running jobs by id, and a second run
            # made it fail the job for good (KeyError), an accepted alert never stored.
            return False
        in_progress_key = in_progress_key_prefix + job_id
        async with self.pool.pipeline(transaction=True) as pipe:
            await pipe.watch(in_progress_key)
            ongoing = await pipe.exists(in_progress_key)
            score = await pipe.zscore(self.queue_name, job_id)
            if ongoing or not score or score > queue_ms():
                return False  # running elsewhere, finished meanwhile, or deferred again
            pipe.multi()
            pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), b"1")
            try:
                await pipe.execute()
            except WatchError as exc:
                if exc.__context__ is None:
                    return False  # a real conflict: another worker claimed it first
                # The connection died at EXEC: the claim may or may not have been written.
                self._lost_claims[job_id] = time.monotonic()
                raise
            except ResponseError:
                return False  # as arq: the transaction was refused
        task = self.loop.create_task(self._run_job(job_id, int(score)))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task
        return True

    async def _run_job(self, job_id: str, score: int) -> None:
        claimed_at = time.monotonic()
        try:
            await self.run_job(job_id, score)
        except REDIS_TROUBLE as exc:
            # Reading the job or recording its outcome failed: it is still queued and marked in
            # progress. Re-running it is safe (every job is idempotent); waiting for its claim to
            # lapse would hold it for the job timeout.
            self._lost_claims[job_id] = claimed_at
            log.warning("job %s: redis unreachable around it (%s), it runs again", job_id, type(exc).__name__)

    async def _release_lost_claims(self) -> None:
        now = time.monotonic()
        stale = [
            in_progress_key_prefix + job_id
            for job_id, claimed_at in self._lost_claims.items()
            # A claim that lapsed may be another worker's by now; one running here again is ours.
            if now - claimed_at < self.in_progress_timeout_s and not self._running_here(job_id)
        ]
        if stale:
            await self.pool.delete(*stale)
        self._lost_claims.clear()

    def _running_here(self, job_id: str) -> bool:
        # A task stays in self.tasks until a poll reaps it, the failed run's own task included.
        task = self.tasks.get(job_id)
        return task is not None and not task.done()

    async def _leave(self) -> None:
        await presence.leave(self.pool, presence.WORKERS, presence.this_process())
        # The health-check key is shared by every worker of the queue: while others run, it is
        # theirs to keep fresh; the last one out deletes it (arq deletes it always).
        if not await presence.count_alive(self.pool, presence.WORKERS):
            await self.pool.delete(self.health_check_key)

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        # arq moves each cron job to its next run before enqueueing this one; if the enqueue fails
        # that run is lost. Put them back so the next poll enqueues it (its job id is unique).
        planned: list[tuple[CronJob, datetime | None]] = [(c, c.next_run) for c in self.cron_jobs]
        try:
            await super().run_cron(n, delay, num_windows)
        except REDIS_TROUBLE:
            for cron_job, next_run in planned:
                cron_job.next_run = next_run
            raise

    async def record_health(self) -> None:
        # arq's health-check key is one per queue; our registry counts each live worker.
        due = time.time() - self._last_health_check >= self.health_check_interval
        await super().record_health()
        if due:
            await self.pool.pexpire(self.health_check_key, HEALTH_KEY_TTL_SECONDS * 1000)
            self._started_at = self._started_at or datetime.now(UTC)
            info = {"started_at": self._started_at.isoformat(), "queue": self.queue_name}
            await presence.beat(self.pool, presence.WORKERS, presence.this_process(), info)

    async def close(self) -> None:
        """arq's close, except that Redis may be away: the database pool and the metrics still close."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if self._pool is None:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            async with asyncio.timeout(CLOSE_REDIS_SECONDS):
                await self._leave()
        except REDIS_TROUBLE as exc:
            log.warning("redis unreachable at shutdown (%s); this worker ages out", type(exc).__name__)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.close(close_connection_pool=True)
        self._pool = None


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    assert settings.database_url
    ctx["pool"] = await db.create_pool(settings.database_url, max_size=20, pgbouncer=settings.pgbouncer)
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    # Guarded against targets on private addresses, checked at send time (engine.channels.egress).
    ctx["session"] = egress.client_session(settings, timeout=timeout)
    ctx["channels"] = build_channels(
        settings, ctx["session"], outbox_factory=lambda kind: OutboxChannel(kind, ctx["pool"])
    )
    email = ctx["channels"].get("EMAIL")
    if isinstance(email, EmailChannel):
        # Open connections kept for the next email: no more than the sends the slots allow at once.
        email.connections = SmtpConnections(settings.channel_concurrency)
    ctx["metrics"] = metrics.MetricsBuffer()
    ctx["channel_slots"] = ChannelSlots(settings.channel_concurrency)
    ctx["escalation_gate"] = escalations.SweepGate()
    clock = ctx["clock"]
    if isinstance(clock, DatabaseClock):
        told = [0.0]  # the offset last logged: said once, and again if it moves

        async def sync_clock() -> None:
            async with ctx["pool"].acquire() as conn:
                await clock.sync(conn)
            if abs(clock.offset - told[0]) > 1:
                told[0] = clock.offset
                log.info("this host's clock is %.1fs off the database's (the one read)", -clock.offset)

        await sync_clock()
        ctx["clock_task"] = periodic.start(CLOCK_SYNC_SECONDS, sync_clock, what="clock sync", log=log)
    # This worker's counts reach Redis about once a second (see engine.observability.metrics);
    # Redis down: they keep counting and go with a later flush.
    ctx["metrics_task"] = periodic.start(
        METRICS_FLUSH_SECONDS, lambda: ctx["metrics"].flush(ctx["redis"]), what="metrics flush", log=log
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    if "clock_task" in ctx:
        await periodic.stop(ctx["clock_task"])
    if "metrics_task" in ctx:
        await periodic.stop(ctx["metrics_task"])
        # Redis away or frozen: these counts are lost rather than the worker kept from exiting.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_REDIS_SECONDS):
                await ctx["metrics"].flush(ctx["redis"])
    email = ctx.get("channels", {}).get("EMAIL")
    if isinstance(email, EmailChannel):
        await email.close()  # QUIT what is kept open
    if "session" in ctx:
        await ctx["session"].close()
    if "pool" in ctx:
        await ctx["pool"].close()


def build_worker(
    settings: Settings, *, burst: bool = False, clock: Clock | None = None, **overrides: Any
) -> Worker:
    """A worker for our jobs; ``overrides`` go to arq's Worker (tests use burst, poll_delay).

    ``clock`` is what the time rules read (tests run it ahead to reach a digest's minute); by
    default the database's (engine.clock.DatabaseClock: a skewed host clock is corrected)."""
    assert settings.redis_url
    # arq counts crashes, our retries and tries that waited for the database alike; our own attempt
    # cap (in Postgres, counted before each send) is the real one.
    max_tries = settings.max_attempts + 5 + outages.WAIT_TRIES
    options: dict[str, Any] = {
        "functions": [
            func(jobs.process_alert, name=queue.PROCESS_ALERT, max_tries=max_tries),
            func(jobs.deliver, name=queue.DELIVER, max_tries=max_tries),
            # A wake-up that fails is not retried: the cron sweep does its work anyway.
            func(cast(WorkerCoroutine, escalations.escalate), name=queue.ESCALATE, max_tries=1),
        ],
        "redis_url": settings.redis_url,
        "job_serializer": queue.serialize,
        "job_deserializer": queue.deserialize,
        "queue_name": settings.queue_name,
        "ctx": {"settings": settings, "clock": clock or DatabaseClock()},
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "burst": burst,
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.worker_poll_delay,
        "job_timeout": settings.job_timeout,
        "keep_result": 3600,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "handle_signals": not burst,
        "cron_jobs": [
            *health.cron_jobs(timeout=settings.job_timeout),
            *digests.cron_jobs(timeout=settings.job_timeout),
            *maintenance.cron_jobs(timeout=settings.job_timeout),
            *escalations.cron_jobs(settings.escalation_sweep_seconds, timeout=settings.job_timeout),
            *heartbeats.cron_jobs(settings.heartbeat_sweep_seconds, timeout=settings.job_timeout),
            *stranded.cron_jobs(timeout=settings.job_timeout),
        ],
        # SIGTERM: stop taking jobs, give running ones this long, then cancel them (arq re-queues them).
        "job_completion_wait": settings.shutdown_grace,
    }
    options.update(overrides)
    return ResilientWorker(**options)


def check_health(settings: Settings) -> int:
    """0 if a worker recorded its health lately (arq's health-check key of our queue), else 1."""
    assert settings.redis_url
    redis_url = settings.redis_url

    async def recorded() -> bool:
        # No retries: a supervisor asks again; it must not wait a minute for an answer.
        redis = await queue.connect(redis_url, retries=0)
        try:
            return bool(await redis.exists(settings.queue_name + health_check_key_suffix))
        finally:
            await redis.aclose()

    try:
        healthy = asyncio.run(recorded())
    except REDIS_TROUBLE as exc:
        log.warning("health check failed: redis unreachable (%s)", type(exc).__name__)
        return 1
    if not healthy:
        log.warning(
            "health check failed: no worker recorded its health in the last %d s", HEALTH_KEY_TTL_SECONDS
        )
        return 1
    return 0
