"""The worker's cron sweep that queues again the pending deliveries whose deliver job Redis lost
(engine.alerts.stranded): a FLUSHALL, the AOF ``everysec`` window or a failover no longer leaves
a stored delivery pending for ever. It is late by at most one sweep plus ``idle_seconds``.

arq runs a cron job once per tick, on whichever worker takes it; were two to sweep at once, their
claims (SKIP LOCKED) and the re-queue by delivery id (a job that exists is left alone) still queue
each delivery once.
"""

from __future__ import annotations

import logging
from typing import cast

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from engine import queue
from engine.alerts import stranded
from workers.jobs import WorkerContext
from workers.outages import next_tick_without_storage

log = logging.getLogger("monoduty.worker")

REQUEUE_STRANDED = "requeue_stranded"
SWEEP_SECONDS = 5
# Beyond the job timeout: arq's in-progress claim outlives it by 5 s (workers.worker), and the
# workers' clocks agree with the database's to well within the rest.
IDLE_MARGIN_SECONDS = 10.0
BATCH = 500
MAX_PER_SWEEP = 5000


def idle_seconds(job_timeout: float) -> float:
    """How long a pending delivery may show no progress before it is taken for stranded: longer
    than any job attempting it can run (arq's job timeout ends it)."""
    return job_timeout + IDLE_MARGIN_SECONDS


@next_tick_without_storage
async def requeue_stranded(ctx: WorkerContext) -> int:
    """Queue again every pending delivery idle too long; how many were queued (the others' jobs
    still exist)."""
    idle = idle_seconds(ctx["settings"].job_timeout)
    taken = queued = 0
    while taken < MAX_PER_SWEEP:
        async with ctx["pool"].acquire() as conn:
            ids = await stranded.take(conn, ctx["clock"].now(), idle, BATCH)
        # Claimed and committed first: a Redis error here leaves them to a sweep one ``idle`` later.
        queued += await queue.requeue_deliveries(ctx["redis"], [str(i) for i in ids])
        taken += len(ids)
        if len(ids) < BATCH:
            break
    if queued:
        log.warning("%d pending deliveries had lost their job (Redis data lost?): queued again", queued)
    return queued


def cron_jobs(timeout: float) -> list[CronJob]:
    job = cast(WorkerCoroutine, requeue_stranded)
    seconds = set(range(0, 60, SWEEP_SECONDS))
    return [cron(job, name=REQUEUE_STRANDED, second=seconds, timeout=timeout)]
