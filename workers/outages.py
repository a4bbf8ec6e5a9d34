"""Jobs wait out a PostgreSQL or Redis outage (or a deadlock PostgreSQL broke) instead of failing
for good.

arq fails a job permanently on any exception other than ``Retry``: a ``process_alert`` that met a
restarting database would drop an alert already answered ``202``, and a ``deliver`` would leave its
delivery pending forever, and a job that hits arq's timeout (a database that stopped answering
rather than refusing) fails for good too. Connection-level errors, a statement PostgreSQL cancelled
(its ``statement_timeout``), and a try that outlives its own deadline set just short of arq's
timeout, are therefore turned into ``Retry`` with exponential backoff. Re-running is safe: every
step is idempotent in the database, and the attempt cap holds because ``deliver`` counts an
attempt (in PostgreSQL) before it sends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
from arq import Retry

from engine import retry
from engine.errors import STORAGE_BUSY, STORAGE_DOWN

log = logging.getLogger("monoduty.worker")

T = TypeVar("T")

# PostgreSQL ended the transaction to break a deadlock or a serialization conflict: running it
# again succeeds. A bug in lock order would otherwise fail the job for good and lose its alert.
CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

# Backoff between tries while the storage is down, and how long a job keeps trying: as long as arq
# keeps the job itself (a day from when it was queued), so an outage never loses one.
WAIT_CAP_SECONDS = 30.0
WAIT_TRIES = int(24 * 3600 / WAIT_CAP_SECONDS)


def deadline(job_timeout: float) -> float:
    """Seconds a try may take: a little less than arq's job timeout, whose expiry is final."""
    return max(job_timeout - 1.0, job_timeout / 2)


def waits_for_storage(job: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """Wrap an arq job so that an unreachable PostgreSQL or Redis defers it (``Retry``)."""

    @functools.wraps(job)
    async def run(ctx: Any, *args: Any, **kwargs: Any) -> T:
        done, exc = await _within_deadline(job, ctx, *args, **kwargs)
        if exc is None:
            return done  # type: ignore[return-value]  # None only with an exception
        try_number = int(ctx.get("job_try") or 1)
        base = ctx["settings"].retry_base_delay
        delay = retry.backoff_delay(try_number, base=base, cap=WAIT_CAP_SECONDS)
        # The type only: a driver's message may name hosts and users.
        log.warning(
            "%s %s deferred %.1fs: %s (%s), try %d",
            job.__name__,
            ctx.get("job_id"),
            delay,
            _reason(exc),
            type(exc).__name__,
            try_number,
        )
        raise Retry(defer=delay) from None

    return run


def next_tick_without_storage(
    sweep: Callable[..., Awaitable[T]],
) -> Callable[..., Coroutine[Any, Any, T | None]]:
    """Wrap a cron sweep so that an unreachable PostgreSQL or Redis (or a conflict, or a tick that
    outlives its deadline) ends this tick with one line, no traceback: the next tick, seconds
    later, does its work, since what it owes is held in PostgreSQL. As ``waits_for_storage`` for
    jobs, except that a tick is not retried (the next one is as good, and arq would hold retries of
    every missed tick)."""

    @functools.wraps(sweep)
    async def run(ctx: Any, *args: Any, **kwargs: Any) -> T | None:
        done, exc = await _within_deadline(sweep, ctx, *args, **kwargs)
        if exc is None:
            return done
        # The type only: a driver's message may name hosts and users.
        log.warning(
            "%s skipped: %s (%s), the next tick tries again", sweep.__name__, _reason(exc), type(exc).__name__
        )
        return None

    return run


async def _within_deadline(
    work: Callable[..., Awaitable[T]], ctx: Any, *args: Any, **kwargs: Any
) -> tuple[T | None, BaseException | None]:
    """Run a job or a sweep within its deadline: what it returned, or the storage error, conflict
    or timeout that ended it (any other exception is raised)."""
    limit = asyncio.timeout(deadline(ctx["settings"].job_timeout))
    try:
        async with limit:
            return await work(ctx, *args, **kwargs), None
    except asyncio.CancelledError:
        # Past our deadline a second cancel came (arq's timeout, while the work was still
        # unwinding from ours: a slow connection release on a stalled loop), so the timeout above
        # did not turn it into TimeoutError. arq would fail a job for good and leave its delivery
        # pending forever; it outlived its deadline, so it is handled like one.
        if not limit.expired():
            raise
        return None, TimeoutError()
    except (*STORAGE_DOWN, *CONFLICTS) as caught:
        return None, caught


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CONFLICTS):
        return "transaction conflict"
    return "storage busy" if isinstance(exc, STORAGE_BUSY) else "storage unreachable"
