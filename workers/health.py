"""The worker's cron job that writes one health sample a minute (the history behind /api/uptime)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from engine.observability import status, uptime
from workers.jobs import WorkerContext
from workers.outages import next_tick_without_storage

RECORD_HEALTH_SAMPLE = "record_health_sample"


@next_tick_without_storage
async def record_health_sample(ctx: WorkerContext) -> str:
    """Check the system as /api/status does and store the result for this minute."""
    current = await status.check(ctx["pool"], ctx["redis"], ctx["settings"])
    async with ctx["pool"].acquire() as conn:
        await uptime.record_sample(conn, current, datetime.now(UTC))
    return str(current["status"])


def cron_jobs(timeout: float) -> list[CronJob]:
    """The cron jobs, each bounded by ``timeout`` (the workers' job timeout).

    A longer timeout here would not be this job's alone: arq holds every job's in-progress claim
    for the longest timeout of any function, so a dead worker's deliveries would wait for it too.
    """
    # unique (arq's default): with many workers, one of them samples each minute.
    # arq types a job's context as a plain dict; ours is the WorkerContext TypedDict it is at runtime.
    job = cast(WorkerCoroutine, record_health_sample)
    return [cron(job, name=RECORD_HEALTH_SAMPLE, second=0, timeout=timeout)]
