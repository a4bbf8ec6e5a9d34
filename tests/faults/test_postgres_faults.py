"""Issue 17, scenario 5: PostgreSQL faults under load (tests/faults/storage.py runs and judges them).

PostgreSQL (a cluster this test starts) is stopped at once (``immediate``, as a crash) for 15 s,
restarted, has every Monoduty connection ended (``pg_terminate_backend``) and holds the alert and
delivery tables locked past the database's ``statement_timeout``, while alerts arrive at a steady
rate: every accepted alert is delivered and counted once, and no worker exits.

- CI size (``-m slow``): 5 alerts a second, 2 workers.
- Full size (``tests/faults/run``, or ``MONODUTY_FAULTS=full``): 20 a second, 3 workers.
Figures: ``postgres-ci`` / ``postgres`` ``.json`` and ``.md``, written before the asserts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

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
from tests.support.providers import FakeProviders

STOP_SECONDS = 15
STATEMENT_TIMEOUT = "2s"
LOCK_SECONDS = 5
PLAN_SECONDS = 51  # the plan below, nominally
ABOUT = (
    "A PostgreSQL cluster of the test's own with `statement_timeout` 2 s, a Redis with AOF, one "
    "`monoduty api` and the workers, the storm's 4 webhooks over push, SMS and email (local "
    "providers at 50 ms), alerts at a steady rate (each re-posted after anything but a 202)."
)
CANCELLED = "QueryCanceledError"


async def postgres_faults(run: LoadRun) -> None:
    pg = run.storage.pg
    await run.hold(4)
    async with run.fault(f"immediate stop for {STOP_SECONDS} s"):
        await asyncio.to_thread(pg.stop, "immediate")
        await run.hold(STOP_SECONDS)
        await asyncio.to_thread(pg.start)
    await run.hold(10)  # the backlog of 15 s drains meanwhile
    async with run.fault("restart (fast shutdown, start)"):
        await asyncio.to_thread(pg.restart)
    await run.hold(5)
    async with run.fault("pg_terminate_backend of every Monoduty connection"):
        ended = await pg.terminate_backends(run.storage.database)
    run.notes.append(f"pg_terminate_backend ended {ended} connections")
    await run.hold(5)
    async with run.fault(f"statement timeout hit: alerts and deliveries locked {LOCK_SECONDS} s"):
        conn = await asyncpg.connect(pg.url(run.storage.database))
        try:
            await conn.execute("SET statement_timeout = 0")
            async with conn.transaction():
                await conn.execute("LOCK TABLE alerts, deliveries IN ACCESS EXCLUSIVE MODE")
                await run.hold(LOCK_SECONDS)
        finally:
            await conn.close()
    await run.hold(5)


async def one_run(name: str, rate: float, workers: int, fake: FakeProviders, folder: Path) -> LoadFigures:
    folder.mkdir(parents=True, exist_ok=True)
    async with own_storage(folder, statement_timeout=STATEMENT_TIMEOUT) as storage:
        figures = await run_under_load(
            name, storage, fake, folder, postgres_faults, seconds=PLAN_SECONDS, rate=rate, workers=workers
        )
    cancelled = sum(log.read_text().count(CANCELLED) for log in folder.glob("worker-*.log"))
    figures.notes.append(f"statements cancelled by the statement timeout (worker logs): {cancelled}")
    return figures


def assert_postgres_sound(figures: LoadFigures) -> None:
    assert_sound(figures)
    # The statement timeout was really hit (else the scenario proved nothing about it).
    cancelled = [n for n in figures.notes if n.startswith("statements cancelled")]
    assert cancelled and not cancelled[0].endswith(": 0"), figures.notes


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_postgres_faults_under_load_lose_nothing(fake_providers: FakeProviders, tmp_path: Path) -> None:
    figures = await one_run("CI size, 5 alerts/s", 5, 2, fake_providers, tmp_path / "run")
    about = ABOUT + " Scenario 5 of issue 17."
    md = write_results([figures], out_folder(tmp_path), "postgres-ci", "PostgreSQL faults under load", about)
    print(md.read_text())
    assert_postgres_sound(figures)


@pytest.mark.slow
@pytest.mark.skipif(
    not full_wanted(), reason="the full size runs with MONODUTY_FAULTS=full (tests/faults/run)"
)
@pytest.mark.timeout(900)
async def test_the_full_postgres_faults_lose_nothing(fake_providers: FakeProviders, tmp_path: Path) -> None:
    figures = await one_run("full, 20 alerts/s", 20, 3, fake_providers, tmp_path / "run")
    about = ABOUT + " Scenario 5 of issue 17."
    md = write_results([figures], out_folder(tmp_path), "postgres", "PostgreSQL faults under load", about)
    print(md.read_text())
    assert_postgres_sound(figures)
