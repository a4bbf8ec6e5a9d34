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
from engine.oncall.throttles import Throttles
from workers.jobs import WorkerContext
from workers.outages import next_tick_without_storage

SWEEP_ESCALATIONS = "sweep_escalations"
QUEUE_BATCH = 500


class SweepGate:
    """One sweep at a time in a worker: a wake-up that comes while one runs asks it to go round
    once more instead of starting a second (which would only contend for the same rows and for
    the connections the deliveries need)."""

    def __init__(self) -> None:
        self.running = False
        self.again = False


@next_tick_without_storage
async def sweep_escalations(ctx: WorkerContext) -> int:
    """Run due steps, send due pages, queue their deliveries; how many steps and pages it took."""
    gate = ctx["escalation_gate"]
    if gate.running:
        gate.again = True
        return 0
    gate.running = True
    taken = 0
    try:
        while True:
            gate.again = False
            taken += await _sweep(ctx)
            if not gate.again:
                return taken
    finally:
        gate.running = False


async def _sweep(ctx: WorkerContext) -> int:
    """Batch by batch: the first pages go out while later steps still wait."""
    taken = 0
    for _ in range(escalation.MAX_ROUNDS):
        now = ctx["clock"].now()
        async with ctx["pool"].acquire() as conn:
            batch = await escalation.sweep_batch(conn, now, throttles=Throttles.of(ctx["settings"]))
        await queue_deliveries(ctx)
        await queue_wake_ups(ctx, batch.wake_ups)
        taken += batch.steps + batch.pages
        if not batch.more:
            break
    return taken


async def escalate(ctx: WorkerContext) -> int | None:
    """A wake-up job (``_defer_until`` a due time): the same sweep, at that moment (storage away:
    skipped, as a tick is; the cron sweep does its work)."""
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
