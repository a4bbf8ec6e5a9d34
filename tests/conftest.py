"""Shared fixtures: real PostgreSQL and Redis (see tests/services.py), the app, accounts, a worker.

Redis is emptied before each test that uses it; PostgreSQL is shared by the session, so tests
make their own users and never depend on what others left.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis

from api.app import create_app
from engine import db, queue
from engine.api_keys import create_api_key
from engine.settings import Settings
from engine.users import User, create_user
from tests.services import Services, provision
from workers.worker import build_worker

# Fixtures of the local provider servers (fake_providers, smtp_server, silent_server, provider_settings,
# live) for every test.
pytest_plugins = ("tests.providers",)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with provision() as provided:
        yield provided


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


def counts(total: int, successful: int, failed: int, *, pending: int = 0) -> dict[str, int]:
    """A webhook's statistics as the API shows them."""
    return {
        "total_calls": total,
        "successful_calls": successful,
        "failed_calls": failed,
        "pending_calls": pending,
    }


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
