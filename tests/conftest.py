"""Every shared fixture: real PostgreSQL and Redis (tests/support/services.py), the app, accounts,
the local provider servers, seeded report data. Plain helpers live in tests/support/.

Redis is emptied before each test that uses it; PostgreSQL is shared by the session, so tests
make their own users and never depend on what others left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import trustme
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis

from api.app import create_app
from engine import db, queue
from engine.settings import NtfySettings, Settings, SmtpSettings, TwilioSettings
from tests.support import report_data as data
from tests.support.browser import SCREENSHOTS
from tests.support.factories import Account, create, make_client, new_account
from tests.support.faults import RedisServer
from tests.support.providers import NTFY_TOKEN, TWILIO_SID, TWILIO_TOKEN, FakeProviders, SmtpServer
from tests.support.report_data import Seeded
from tests.support.services import Services, provision

# The dashboard's browser fixtures (dashboard, playwright_browser, context), for the modules that name them.
pytest_plugins = ["tests.support.dashboard_browser"]


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with provision() as provided:
        yield provided


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCREENSHOTS:
        terminalreporter.write_line(f"dashboard screenshots: {SCREENSHOTS[0]}")


@pytest.fixture
def settings(services: Services) -> Settings:
    """Dev-like settings (every channel to the outbox) over the session's services."""
    return Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        dev=True,
        secret_key="test-secret-key-0123456789abcdef0123456789",
        require_https=False,
        worker_poll_delay=0.01,
        retry_base_delay=0.01,
    )


# What earlier tests left pending: emptying Redis took their jobs, and the workers' stranded-delivery
# sweep (workers/stranded.py) would send them in this test, to this test's providers.
FORGET_PENDING = (
    "UPDATE deliveries SET status = 'cancelled', finished_at = now(), last_error = 'left by an earlier test' "
    "WHERE status = 'pending'"
)


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[ArqRedis]:
    """The session's Redis db, emptied before the test (and the deliveries whose jobs it held forgotten)."""
    client = await queue.connect(services.redis_url)
    await client.flushdb()
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(FORGET_PENDING)
    finally:
        await conn.close()
    yield client
    await client.aclose()


@pytest.fixture
async def pool(services: Services) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(services.database_url, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def client(settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    """A real HTTP client against the real app on a random local port."""
    client = await make_client(settings)
    yield client
    await client.close()


@pytest.fixture
async def account(pool: asyncpg.Pool) -> Account:
    return await new_account(pool)


@pytest.fixture
async def other_account(pool: asyncpg.Pool) -> Account:
    return await new_account(pool)


# The local provider servers (tests/support/providers.py) and settings pointing every channel at them.


@pytest.fixture
async def fake_providers() -> AsyncIterator[FakeProviders]:
    """A running FakeProviders on a random local port."""
    fake = FakeProviders()
    # No access log: it stands in for a remote provider, and its log lines (with the account sid in
    # the path) would otherwise mix with ours in the tests that check what we log.
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server(access_log=None)
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        fake.release()
        await server.close()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An outbound HTTP session, as the worker hands its channels (tests/test_channel_*.py)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on a random local port; AUTH is offered and checked but not required."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """The port of a server that accepts connections and never says a word (an SMTP timeout)."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        release.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
def provider_settings(
    services: Services,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> Settings:
    """Settings with every channel (SMTP, Twilio, ntfy) pointed at this module's local servers."""
    return Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        smtp=SmtpSettings(smtp_server.host, smtp_server.port, None, None, "none", "alerts@monoduty.test"),
        twilio=TwilioSettings(TWILIO_SID, TWILIO_TOKEN, "+15005550006", fake_providers.url),
        ntfy=NtfySettings(fake_providers.url, NTFY_TOKEN),
        max_attempts=4,
        retry_base_delay=0.01,
        provider_timeout=2.0,
        worker_poll_delay=0.01,
    )


@pytest.fixture
async def live(provider_settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    """The app on ``provider_settings``, over a real HTTP client."""
    client = await make_client(provider_settings)
    yield client
    await client.close()


@pytest.fixture
async def seeded(client: TestClient, account: Account, other_account: Account, pool: asyncpg.Pool) -> Seeded:
    prod = await create(client, account, {"name": "Production", "notificationTypes": ["EMAIL", "SMS"]})
    staging = await create(
        client,
        account,
        {"name": "Staging", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "staging-topic"}},
    )
    other = await create(client, other_account, {"name": "Other Team Hook", "notificationTypes": ["SMS"]})
    alerts = data.specs()
    await data.insert(pool, account.user.id, {"prod": prod["id"], "staging": staging["id"]}, alerts)
    await data.insert(pool, other_account.user.id, {"other": other["id"]}, data.other_specs())
    incidents = data.incident_specs()
    await data.insert_incidents(
        pool, account.user.id, {"prod": prod["id"], "staging": staging["id"]}, incidents
    )
    await data.insert_incidents(pool, other_account.user.id, {"other": other["id"]}, data.other_incidents())
    names = {"prod": "Production", "staging": "Staging"}
    return Seeded(account, other_account, alerts, names, incidents)


@pytest.fixture
def own_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A Redis with AOF this test may kill, stop or freeze; ``appendfsync always`` unless
    parametrized indirectly (``everysec``)."""
    server = RedisServer(tmp_path / "redis", aof=True, fsync=getattr(request, "param", "always"))
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)  # a failed freeze test must not leave it stopped
    server.stop()


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket of this test connects anywhere but 127.0.0.1/::1 (or a Unix socket): the real
    PagerDuty and Opsgenie clients default to their vendors' hosts, and must never reach them."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: object) -> None:
        if not isinstance(address, tuple):
            return  # a Unix socket path
        try:
            loopback = ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
        except ValueError:
            loopback = False  # a host name: connect() would resolve it itself
        if not loopback:
            raise ConnectionRefusedError(f"test guard: no connections to {address[0]}")

    def guarded(self: socket.socket, address: object) -> None:
        check(address)
        connect(self, address)  # type: ignore[arg-type]

    def guarded_ex(self: socket.socket, address: object) -> int:
        check(address)
        return connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)


@pytest.fixture
async def tls_server(settings: Settings, redis: ArqRedis) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    """The app over HTTPS on 127.0.0.1 with a trustme certificate; its URL and a trusting context."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server(ssl=server_ctx)
    try:
        yield str(server.make_url("")).rstrip("/"), client_ctx
    finally:
        await server.close()
