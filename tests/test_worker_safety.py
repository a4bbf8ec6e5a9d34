"""What a worker does with hostile or broken queue entries: never run them, never die of them."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

from arq.connections import ArqRedis

from engine.settings import Settings
from tests.support.factories import run_worker


class Exploit:
    """Unpickling this would create a file: proof that pickle was trusted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.path,))


async def test_a_pickled_job_is_never_unpickled(redis: ArqRedis, settings: Settings, tmp_path: Path) -> None:
    """Whoever can write to Redis must not be able to run code in a worker."""
    marker = tmp_path / "pwned"
    now_ms = int(time.time() * 1000)
    payload = {"t": 1, "f": "process_alert", "a": [Exploit(marker)], "k": {}, "et": now_ms}
    await redis.set("arq:job:evil", pickle.dumps(payload))
    await redis.zadd("arq:queue", {"evil": now_ms})
    await run_worker(settings)
    assert not marker.exists()
    # the bad entry is dropped, and the worker went on to an empty queue rather than crashing
    assert await redis.zcard("arq:queue") == 0
