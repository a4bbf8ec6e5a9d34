"""A provider's answer is read up to engine.channels.http.ANSWER_LIMIT, never whole, and still classified
by its status: a provider (or whatever answers at its URL) sending a huge or endless body cannot fill a
worker's memory or hold the delivery until its timeout. The SMTP client caps replies the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from arq.connections import ArqRedis

from engine.channels.base import DeliveryError
from engine.channels.email import EmailChannel
from engine.settings import NtfySettings, Settings, SmtpSettings
from tests.support.channels import alert
from tests.support.factories import Account, counts, deliveries, make_client, run_worker, statistics
from tests.support.processes import wait_until

CHUNK = b'{"error": "' + b"x" * 65_525  # 64 KiB; JSON-looking, but it never ends: nothing parses
ANSWER_CHUNKS = 1024  # a 64 MiB answer: the test stays safe to run against an unbounded read
# What a cut answer costs the provider: the cap plus socket and client buffers (about 4 MB here).
SENT_BOUND = 16 * 1024 * 1024


@dataclass
class HugeProvider:
    """ntfy's `POST /{topic}` under `{url}/{status}`, answering 64 MiB with that status."""

    url: str = ""
    sent: list[int] = field(default_factory=list)  # bytes written per answer, once the client left

    async def answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=int(request.match_info["status"]))
        response.content_type = "application/json"
        response.content_length = ANSWER_CHUNKS * len(CHUNK)
        await response.prepare(request)
        written = 0
        try:
            for _ in range(ANSWER_CHUNKS):  # or until the client closes the connection
                await response.write(CHUNK)
                written += len(CHUNK)
        except ConnectionError:
            pass
        finally:  # also when aiohttp cancels the handler of a closed connection
            self.sent.append(written)
        return response


@pytest.fixture
async def huge() -> AsyncIterator[HugeProvider]:
    provider = HugeProvider()
    app = web.Application()
    app.router.add_post("/{status}/{topic}", provider.answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    provider.url = str(server.make_url("")).rstrip("/")
    yield provider
    await server.close()


@pytest.mark.parametrize(
    ("status", "outcome", "attempts", "stats"),
    [
        (200, "delivered", 1, counts(1, 1, 0)),
        (400, "failed", 1, counts(1, 0, 1)),  # final at once, as any 4xx
        (503, "failed", 4, counts(1, 0, 1)),  # retried up to max_attempts, each answer cut short
    ],
)
async def test_a_huge_answer_is_cut_and_classified_by_its_status(
    provider_settings: Settings,
    redis: ArqRedis,  # an empty queue: the burst worker must not wait on other tests' deferred jobs
    account: Account,
    pool: asyncpg.Pool,
    huge: HugeProvider,
    status: int,
    outcome: str,
    attempts: int,
    stats: dict,
) -> None:
    settings = provider_settings.with_(ntfy=NtfySettings(f"{huge.url}/{status}"))
    client = await make_client(settings)
    try:
        body = {"name": "push", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "ops-alerts"}}
        resp = await client.post("/api/webhooks", json=body, headers=account.headers)
        assert resp.status == 201, await resp.text()
        webhook = (await resp.json())["webhook"]
        resp = await client.post(
            webhook["webhook_url"].removeprefix("http://monoduty.test"), json={"title": "x"}
        )
        alert_id = (await resp.json())["alert_id"]

        await run_worker(settings)

        push = (await deliveries(pool, alert_id))["PUSH_NOTIF"]
        assert (push["status"], push["attempts"]) == (outcome, attempts)
        if status != 200:
            # The status decides, and the error still quotes the start of what the provider said.
            assert f"ntfy answered {status}" in push["last_error"] and "xxx" in push["last_error"]
            assert "no answer within" not in push["last_error"]
        assert await statistics(client, account, webhook) == stats
    finally:
        await client.close()
    # Every answer's connection was dropped by us, a little past the cap.
    await wait_until(lambda: len(huge.sent) == attempts, "the provider to see each connection closed")
    assert all(sent < SENT_BOUND for sent in huge.sent), huge.sent


async def test_an_endless_smtp_reply_is_a_transient_failure() -> None:
    """aiosmtplib stops reading a reply at 32 KiB: a server that never ends its greeting is refused."""
    written: list[int] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        try:
            while True:
                writer.write(b"220-" + b"x" * 1000 + b"\r\n")
                await writer.drain()
                total += 1006
        except ConnectionError:
            written.append(total)
        finally:
            writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        channel = EmailChannel(SmtpSettings("127.0.0.1", port, None, None, "none", "alerts@monoduty.test"))
        with pytest.raises(DeliveryError) as caught:
            await channel.send(alert(), "oncall@example.com")
        assert not caught.value.permanent and "too long" in str(caught.value)
    finally:
        server.close()
        await server.wait_closed()
