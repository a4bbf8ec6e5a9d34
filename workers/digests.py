"""The worker's cron sweep that sends due storm digests (engine.incidents.digests).

Every few seconds one worker (arq runs a cron job once per tick, whichever worker enqueues it
first) claims each due digest and queues its deliveries. The rows in PostgreSQL are what is owed,
so a digest whose worker died is sent by whichever worker runs the next sweep.
"""

from __future__ import annotations

import uuid
from typing import cast

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from engine import queue
from engine.incidents import digests
from workers.jobs import WorkerContext
from workers.outages import next_tick_without_storage

SEND_DIGESTS = "send_digests"
SWEEP_SECONDS = 5  # how late a digest may go out after it is due
MAX_PER_SWEEP = 1000


@next_tick_without_storage
async def send_digests(ctx: WorkerContext) -> int:
    """Send every digest due now; how many were taken."""
    done: list[uuid.UUID] = []
    while len(done) < MAX_PER_SWEEP:
        now = ctx["clock"].now()
        async with ctx["pool"].acquire() as conn:
            taken = await digests.take_due(conn, now, done)
        if taken is None:
            break
        digest_id, pending = taken
        for delivery_id in pending:
            await queue.enqueue_delivery(ctx["redis"], str(delivery_id))
        async with ctx["pool"].acquire() as conn:
            await digests.mark_enqueued(conn, digest_id, now)
        done.append(digest_id)
    return len(done)


def cron_jobs(timeout: float) -> list[CronJob]:
    job = cast(WorkerCoroutine, send_digests)
    seconds = set(range(0, 60, SWEEP_SECONDS))
    return [cron(job, name=SEND_DIGESTS, second=seconds, timeout=timeout)]
