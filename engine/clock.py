"""The one clock the engine's time rules read (DESIGN rule 3: no ``datetime.now()`` inside rules).

Workers hold one in their context; tests hand them a clock that runs ahead, so a minute's storm
window or a digest due in a minute is reached at once instead of waited for.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import arq.connections
import arq.jobs
import arq.utils
import arq.worker


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM = SystemClock()


def real_time(clock: Clock, at: datetime) -> datetime:
    """The real instant at which ``clock`` reads ``at`` (the ``_defer_until`` of a wake-up job).

    A clock running at its own pace converts with its ``real_time`` method; any other is taken
    to run at the real pace, with its offset (a clock shifted ahead)."""
    convert = getattr(clock, "real_time", None)
    if callable(convert):
        result = convert(at)
        assert isinstance(result, datetime)
        return result
    return at - (clock.now() - datetime.now(UTC))


# Clock skew (issue 17, scenario 7). Each process's own clock may be minutes off; PostgreSQL's is
# the one every process shares. A worker 10 minutes ahead would otherwise run an escalation step
# that another worker set due in 5 minutes at once, and one 10 minutes behind would see every job
# the API queued as deferred by 10 minutes (arq scores jobs and polls with the local clock). So
# each process measures its offset to the database and reads the corrected time: the worker's
# rules through ``DatabaseClock``, the queue's scores through ``queue_ms`` (arq's too).
_queue_offset_ms = 0


def queue_ms() -> int:
    """Now in epoch milliseconds on the database's clock: the queue's scores and polls."""
    return int(time.time() * 1000) + _queue_offset_ms


async def database_offset(conn: Any) -> float:
    """Seconds to add to this process's clock to read PostgreSQL's (half the round trip's error)."""
    before = time.time()
    theirs = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
    after = time.time()
    return float(theirs) - (before + after) / 2


def align_queue(offset: float) -> None:
    """Score and poll arq's jobs on the database's clock from now on, in this process.

    arq reads ``arq.utils.timestamp_ms`` through names its modules imported, so those names are
    pointed at ``queue_ms``; every process (API and workers) aligns, so their scores agree."""
    global _queue_offset_ms
    _queue_offset_ms = round(offset * 1000)
    for module in (arq.utils, arq.connections, arq.jobs, arq.worker):
        module.timestamp_ms = queue_ms  # type: ignore[attr-defined]


class DatabaseClock:
    """The system clock corrected by its last measured offset to PostgreSQL's (``sync``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def real_time(self, at: datetime) -> datetime:
        # A wake-up's _defer_until is scored by arq on the database's clock too (align_queue).
        return at

    async def sync(self, conn: Any) -> None:
        self.offset = await database_offset(conn)
        align_queue(self.offset)
