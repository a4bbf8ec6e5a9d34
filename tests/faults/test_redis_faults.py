"""Issue 17, scenario 4: Redis faults under load (tests/faults/storage.py runs and judges them).

On a redis-server the test starts (AOF): SIGKILL + restart with ``appendfsync always``, then with
``everysec``; SIGSTOP for 10 s (a partition); every client connection reset (CLIENT KILL) every
250 ms; ``maxmemory`` reached (noeviction). Senders get 202 or 503 + Retry-After, never a 500 or
a hang; no accepted alert is lost but in the documented everysec window; workers never exit.
Each fault's slowest answer and how soon accept-to-send is back to normal are figures (results/).

- CI size (``-m slow``): 5 alerts a second, resets for 6 s, 2 workers.
- Full size (``MONODUTY_FAULTS=full``): 20 a second, resets for 20 s, 3 workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import redis as redis_sync

from tests.faults.storage import (
    LoadFigures,
    LoadRun,
    assert_sound,
    full_wanted,
    out_folder,
    own_storage,
    run_under_load,
    write_results,
)
from tests.support.outages import kill_clients
from tests.support.providers import FakeProviders

ABOUT = (
    "A redis-server of the test's own with AOF, its own PostgreSQL, one `monoduty api` and the "
    "workers, the storm's 4 webhooks over push, SMS and email (local providers at 50 ms), alerts at "
    "a steady rate (each re-posted after anything but a 202). Scenario 4 of issue 17."
)
FREEZE_SECONDS = 10
MAXMEMORY_SECONDS = 5


def redis_faults(resets_seconds: float):  # type: ignore[no-untyped-def]
    async def plan(run: LoadRun) -> None:
        server = run.storage.redis
        await run.hold(4)
        for fsync in ("always", "everysec"):
            admin = redis_sync.Redis.from_url(server.url, socket_timeout=5)
            admin.config_set("appendfsync", fsync)
            admin.close()
            server.fsync = fsync  # type: ignore[assignment]
            async with run.fault(f"SIGKILL + restart, appendfsync {fsync}"):
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)
            await run.hold(6)
        assert server.proc is not None
        async with run.fault(f"SIGSTOP for {FREEZE_SECONDS} s (a partition)"):
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                await run.hold(FREEZE_SECONDS)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
        await run.hold(6)
        async with run.fault(f"connections reset every 250 ms for {resets_seconds:g} s"):
            for _ in range(int(resets_seconds * 4)):
                await asyncio.to_thread(kill_clients, server)
                await run.hold(0.25)
        await run.hold(6)
        admin = redis_sync.Redis.from_url(server.url, socket_timeout=5)
        try:
            used = int(admin.info("memory")["used_memory"])
            async with run.fault(f"maxmemory reached (noeviction) for {MAXMEMORY_SECONDS} s"):
                admin.config_set("maxmemory-policy", "noeviction")
                admin.config_set("maxmemory", str(used))
                await run.hold(MAXMEMORY_SECONDS)
                admin.config_set("maxmemory", "0")
        finally:
            admin.close()
        await run.hold(6)

    return plan


def plan_seconds(resets_seconds: float) -> float:
    return 4 + 2 * 7 + FREEZE_SECONDS + 6 + resets_seconds + 6 + MAXMEMORY_SECONDS + 6


async def one_run(
    name: str, rate: float, workers: int, resets: float, fake: FakeProviders, folder: Path
) -> LoadFigures:
    folder.mkdir(parents=True, exist_ok=True)
    async with own_storage(folder, fsync="always") as storage:
        return await run_under_load(
            name,
            storage,
            fake,
            folder,
            redis_faults(resets),
            seconds=plan_seconds(resets),
            rate=rate,
            workers=workers,
        )


def assert_redis_sound(figures: LoadFigures) -> None:
    # Only the alerts of the everysec kill's window may be lost; none to the always kill.
    window = sum(f.lost_in_window for f in figures.faults if "everysec" in f.name)
    assert all(f.lost == 0 for f in figures.faults if "everysec" not in f.name), figures.faults
    assert_sound(figures, lost_allowed=window)
    assert figures.storm.lost == sum(f.lost for f in figures.faults), figures.storm.lost_alerts


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_redis_faults_under_load_lose_nothing_beyond_the_window(
    fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures = await one_run("CI size, 5 alerts/s", 5, 2, 6, fake_providers, tmp_path / "run")
    md = write_results([figures], out_folder(tmp_path), "redis-ci", "Redis faults under load", ABOUT)
    print(md.read_text())
    assert_redis_sound(figures)


@pytest.mark.slow
@pytest.mark.skipif(not full_wanted(), reason="the full size runs with MONODUTY_FAULTS=full")
@pytest.mark.timeout(900)
async def test_the_full_redis_faults_lose_nothing_beyond_the_window(
    fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures = await one_run("full, 20 alerts/s", 20, 3, 20, fake_providers, tmp_path / "run")
    md = write_results([figures], out_folder(tmp_path), "redis", "Redis faults under load", ABOUT)
    print(md.read_text())
    assert_redis_sound(figures)
