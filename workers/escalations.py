"""The escalation sweep in workers: a cron every MONODUTY_ESCALATION_SWEEP_SECONDS and the
wake-up jobs deferred to each due time both run ``sweep_escalations`` (engine.oncall.escalation).

PostgreSQL holds what is due; these jobs only decide when a worker looks. A wake-up lost with
Redis, or a worker killed mid-sweep (its transaction rolls back, its rows unlock), delays a step
or a page until the next cron sweep, on any worker; the rows are claimed with SKIP LOCKED, so two
sweeps at once never take one. The deliveries of sent pages are queued after their transaction
commits, and marked queued after that: a worker dying in between leaves them to the next sweep
(queued by delivery id, so never twice).
"""

from __future__ import annotations

from typing import cast

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from engine import queue
from engine.oncall import escalation, paging
from engine.oncall.paging import WakeUp
from workers.jobs import WorkerContext

SWEEP_ESCALATIONS = "sweep_escalations"
QUEUE_BATCH = 500


async def sweep_escalations(ctx: WorkerContext) -> int:
    """Run due steps, send due pages, queue their deliveries; how many steps and pages it took."""
    now = ctx["clock"].now()
    async with ctx["pool"].acquire() as conn:
        swept = await escalation.sweep(conn, now)
    await queue_deliveries(ctx)
    await queue_wake_ups(ctx, swept.wake_ups)
    return swept.steps + swept.pages


async def escalate(ctx: WorkerContext) -> int:
    """A wake-up job (``_defer_until`` a due time): the same sweep, at that moment."""
    return await sweep_escalations(ctx)


async def queue_deliveries(ctx: WorkerContext) -> None:
    while True:
        async with ctx["pool"].acquire() as conn:
            waiting = await paging.unqueued(conn, QUEUE_BATCH)
        if not waiting:
            return
        for _, delivery_id in waiting:
            await queue.enqueue_delivery(ctx["redis"], str(delivery_id))
        async with ctx["pool"].acquire() as conn:
            await paging.mark_enqueued(conn, [page_id for page_id, _ in waiting], ctx["clock"].now())
        if len(waiting) < QUEUE_BATCH:
            return


async def queue_wake_ups(ctx: WorkerContext, wake_ups: list[WakeUp]) -> None:
    await escalation.enqueue_wake_ups(ctx["redis"], ctx["clock"], wake_ups)


def cron_jobs(seconds: int, timeout: float) -> list[CronJob]:
    job = cast(WorkerCoroutine, sweep_escalations)
    every = set(range(0, 60, min(max(seconds, 1), 60)))
    return [cron(job, name=SWEEP_ESCALATIONS, second=every, timeout=timeout)]
