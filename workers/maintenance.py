"""The worker's cron sweep that ends due maintenance windows (engine.maintenance.ends).

Every few seconds one worker claims each window whose end has come, pages what it held that is
still triggered (or not, with ``pageOnEnd`` off) and queues those pages. The rows in PostgreSQL are
what is owed, so a window whose worker died is released by whichever worker runs the next sweep.
The same sweep sends the team's reminder 10 minutes before a window ends (engine.maintenance.reminders).
"""

from __future__ import annotations

import uuid
from typing import cast

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from engine import queue
from engine.maintenance import ends, reminders
from engine.oncall import escalation
from workers.jobs import WorkerContext
from workers.outages import next_tick_without_storage

END_MAINTENANCE = "end_maintenance"
SWEEP_SECONDS = 5  # how late a window's held incidents may be paged after it ends
MAX_PER_SWEEP = 1000


@next_tick_without_storage
async def end_maintenance(ctx: WorkerContext) -> int:
    """Remind the teams of windows about to end, then end every window due now and queue what it
    pages; how many were ended."""
    async with ctx["pool"].acquire() as conn:
        await reminders.remind_due(conn, ctx["clock"].now())
    done: list[uuid.UUID] = []
    while len(done) < MAX_PER_SWEEP:
        now = ctx["clock"].now()
        async with ctx["pool"].acquire() as conn:
            taken = await ends.take_due(conn, now, done)
        if taken is None:
            break
        for delivery_id in taken.deliveries:
            await queue.enqueue_delivery(ctx["redis"], str(delivery_id))
        await escalation.enqueue_wake_ups(ctx["redis"], ctx["clock"], taken.wake_ups)
        async with ctx["pool"].acquire() as conn:
            await ends.mark_enqueued(conn, taken.window_id, now)
        done.append(taken.window_id)
    return len(done)


def cron_jobs(timeout: float) -> list[CronJob]:
    job = cast(WorkerCoroutine, end_maintenance)
    seconds = set(range(0, 60, SWEEP_SECONDS))
    return [cron(job, name=END_MAINTENANCE, second=seconds, timeout=timeout)]
