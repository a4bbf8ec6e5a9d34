"""The heartbeat sweep in workers: every MONODUTY_HEARTBEAT_SWEEP_SECONDS a cron job runs
``check_heartbeats`` (engine.heartbeats.checks), then queues the deliveries of the alerts it
raised, and of any alert a heartbeat raised that a process dying after its commit left unqueued
(engine.heartbeats.raised).

arq runs a cron job once per tick, on whichever worker takes it; were two to sweep at once, their
claims (SKIP LOCKED) would still never take one heartbeat twice.
"""

from __future__ import annotations

from typing import cast

from arq import cron
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from engine.heartbeats import checks, raised
from workers.jobs import WorkerContext
from workers.outages import next_tick_without_storage

CHECK_HEARTBEATS = "check_heartbeats"
# A tick's result only has to outlive the other workers' attempts to queue the same tick.
KEEP_RESULT_SECONDS = 60


@next_tick_without_storage
async def check_heartbeats(ctx: WorkerContext) -> int:
    """Sweep at the worker clock's now; how many heartbeats went down."""
    every = ctx["settings"].heartbeat_sweep_seconds
    swept = await checks.sweep(ctx["pool"], ctx["clock"].now(), every=every)
    await raised.queue_owed(ctx["pool"], ctx["redis"], ctx["clock"])
    return swept.down


def cron_jobs(seconds: int, timeout: float) -> list[CronJob]:
    """The sweep every ``seconds`` (1-60). arq queues a cron job a second ahead, so a sweep every
    second would always have one waiting: a burst worker (the tests') would never find its queue
    empty. The default, 5 s, ticks with the escalation and digest sweeps."""
    job = cast(WorkerCoroutine, check_heartbeats)
    every = set(range(0, 60, min(max(seconds, 1), 60)))
    return [cron(job, name=CHECK_HEARTBEATS, second=every, timeout=timeout, keep_result=KEEP_RESULT_SECONDS)]
