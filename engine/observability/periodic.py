"""The loop behind each "about once a second, hand this process's numbers to Redis" task.

    task = periodic.start(1.0, step, what="metrics flush", log=log)
    ...
    await periodic.stop(task)

``step`` runs at once, then every ``seconds``. A failing round (Redis away) is logged with the
exception's type only (a driver's message may name hosts and users) and the next round tries
again: the loop ends only when stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


def start(
    seconds: float,
    step: Callable[[], Awaitable[None]],
    *,
    what: str,
    log: logging.Logger,
    level: int = logging.WARNING,
) -> asyncio.Task[None]:
    """Run ``step`` every ``seconds`` in a background task; failures are logged as ``<what> failed``."""

    async def loop() -> None:
        while True:
            try:
                await step()
            except Exception as exc:
                log.log(level, "%s failed: %s", what, type(exc).__name__)
            await asyncio.sleep(seconds)

    return asyncio.create_task(loop(), name=what)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the loop and wait until it has ended; a cancel of the caller meanwhile still stands."""
    current = asyncio.current_task()
    # A cleanup may run in a task cancelled already (aiohttp's run_app cancels the task running its
    # cleanup): only a cancel arriving while this waits is the caller's own.
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        # The loop's own end, unless the caller was cancelled meanwhile: then that cancel is the
        # caller's to act on (a worker's shutdown is one cancel of its main task).
        if current is not None and current.cancelling() > before:
            raise
