"""The suite's queue baseline: an arq worker whose one job does nothing, with Monoduty's worker settings.

Run as its own process, as `monoduty worker` is. Each job returns how long it waited in the queue
(ms from enqueue to start), kept as arq's result, so the suite reads both the drain rate and the
pick-up latency of arq itself from the results.

    python -m bench.arq_noop QUEUE_NAME   (MONODUTY_REDIS_URL and the MONODUTY_WORKER_* settings)
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Any

from arq import Worker, func
from arq.connections import RedisSettings

from engine import queue
from engine.settings import Settings

NOOP = "noop"


async def noop(ctx: dict[str, Any]) -> float:
    return (datetime.now(UTC) - ctx["enqueue_time"]).total_seconds() * 1000


def main() -> None:
    settings = Settings.from_env(os.environ)
    assert settings.redis_url
    Worker(
        functions=[func(noop, name=NOOP)],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        job_serializer=queue.serialize,
        job_deserializer=queue.deserialize,
        queue_name=sys.argv[1],
        max_jobs=settings.worker_concurrency,
        poll_delay=settings.worker_poll_delay,
        job_timeout=settings.job_timeout,
        keep_result=3600,
        handle_signals=True,
    ).run()


if __name__ == "__main__":
    main()
