"""The workers' cron sweeps during a PostgreSQL outage behave as jobs do: one line each, no
traceback, and the next tick does their work once the database is back (workers.outages)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from arq.connections import ArqRedis

from engine import db
from engine.clock import SYSTEM
from engine.settings import Settings
from tests.support.faults import TcpProxy
from tests.support.services import Services
from workers.escalations import SweepGate
from workers.worker import build_worker


@pytest.fixture
async def proxy(services: Services) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy.to_database(services.database_url)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_each_cron_sweep_skips_its_tick_with_one_line_while_postgres_is_down(
    settings: Settings,
    services: Services,
    redis: ArqRedis,
    proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    crons = build_worker(settings, burst=True).cron_jobs
    pool: asyncpg.Pool = await db.create_pool(proxy.url(services.database_url), max_size=2)
    ctx = {
        "settings": settings,
        "pool": pool,
        "redis": redis,
        "clock": SYSTEM,
        "escalation_gate": SweepGate(),
    }
    try:
        await proxy.stop()  # connections cut, new ones refused
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            for cron in crons:
                assert await cron.coroutine(ctx) is None, cron.name
        # Ours only: asyncpg's pool says its own line (and traceback) about the connections it lost.
        said = [r for r in caplog.records if r.name.startswith("monoduty") and r.levelno >= logging.WARNING]
        assert [r.getMessage().split(" skipped: ")[0] for r in said] == [c.name for c in crons]
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
        assert all("storage unreachable" in r.getMessage() for r in said)

        await proxy.start()  # back: the next tick does the work
        for cron in crons:
            assert await cron.coroutine(ctx) is not None, cron.name
    finally:
        await pool.close()
