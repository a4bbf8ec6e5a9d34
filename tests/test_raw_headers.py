"""Header bytes that are not UTF-8 (aiohttp keeps them as surrogates) are a 401, never a 500:
sent over a raw socket, since HTTP clients refuse to send them."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.auth import sessions
from engine.settings import Settings
from tests.support.factories import Account, path_of, signed_webhook

BAD = b"\xff\xfe\xed"
NOW = f"webhook-timestamp: {int(time.time())}".encode()  # fresh: the signature itself is checked


async def send_raw(
    client: TestClient, method: str, path: str, headers: list[bytes], body: bytes = b""
) -> tuple[int, bytes]:
    """One request written byte for byte; answers (status, body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    head += [*headers, f"Content-Length: {len(body)}".encode()]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(metrics_token="a metrics token")


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer md_live_" + BAD,
        b"Cookie: monoduty_session=" + BAD + b"a" * 30,
    ],
)
async def test_undecodable_credentials_are_unauthorized(client: TestClient, header: bytes) -> None:
    for method in ("GET", "POST"):
        status, body = await send_raw(client, method, "/api/webhooks", [header], b"{}")
        assert status == 401, body
        assert b'"success":false' in body


async def test_undecodable_csrf_token_is_refused(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    cookie, _ = await sessions.start(redis, account.user.id, 3600)
    headers = [f"Cookie: {sessions.COOKIE_NAME}={cookie}".encode(), b"X-CSRF-Token: " + BAD]
    status, body = await send_raw(client, "POST", "/api/notifications/mark-all-read", headers)
    assert status == 403 and b"CSRF_FAILED" in body


async def test_undecodable_metrics_token_is_refused(client: TestClient) -> None:
    headers = [b"Authorization: Bearer " + BAD, b"X-Forwarded-For: 203.0.113.9"]
    status, body = await send_raw(client, "GET", "/metrics", headers)
    assert status == 401 and b"UNAUTHORIZED" in body


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Hub-Signature-256: sha256=" + BAD],
        [b"webhook-id: msg_" + BAD, NOW, b"webhook-signature: v1,abc"],
        [b"webhook-id: msg_1", NOW, b"webhook-signature: v1," + BAD],
    ],
)
async def test_undecodable_signatures_are_refused(
    client: TestClient, account: Account, redis: ArqRedis, headers: list[bytes]
) -> None:
    path = path_of(await signed_webhook(client, account))
    status, body = await send_raw(client, "POST", path, [b"Content-Type: application/json", *headers], b"{}")
    assert status == 401, body
    assert await redis.zcard("arq:queue") == 0
