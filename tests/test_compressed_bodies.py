"""Compressed request bodies: inflated by us, within the limit, never before the caller is known.

The bomb tests run `monoduty api` as a real process and talk to it over raw sockets, as an
attacker would: eight gzip bodies of 256 KB that inflate to 256 MiB each.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import Settings
from tests.support.factories import (
    FULL,
    Account,
    assert_error,
    create,
    new_account,
    outbox,
    path_of,
    run_worker,
)
from tests.support.processes import ApiProcess
from tests.support.services import Services

HEX_TEXT = b"".join(hashlib.sha256(str(i).encode()).hexdigest().encode() for i in range(20_000))  # 1.28 MB
ALERT = json.dumps({"title": "Disk full", "message": "/var at 99%", "severity": "warning"}).encode()
BOMB_MIB = 256
BOMBS = 8


def raw_deflate(data: bytes) -> bytes:
    squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return squeeze.compress(data) + squeeze.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(ALERT)),
        ("x-gzip", gzip.compress(ALERT)),
        ("deflate", zlib.compress(ALERT)),
        ("deflate", raw_deflate(ALERT)),  # what some clients send for "deflate"
        ("GZip", gzip.compress(ALERT[:20]) + gzip.compress(ALERT[20:])),  # two gzip members
        ("identity", ALERT),
    ],
)
async def test_compressed_alerts_are_inflated_and_delivered(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, encoding: str, body: bytes
) -> None:
    webhook = await create(client, account, {**FULL, "notificationTypes": ["EMAIL"]})
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    resp = await client.post(path_of(webhook), data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    await run_worker(settings)
    sent = await outbox(pool, (await resp.json())["alert_id"])
    assert [r["subject"] for r in sent] == ["[WARNING] #1 Disk full"]


async def test_compressed_api_json_is_read(client: TestClient, account: Account) -> None:
    headers = {**account.headers, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    resp = await client.post("/api/webhooks", data=gzip.compress(json.dumps(FULL).encode()), headers=headers)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["webhook"]["name"] == FULL["name"]
    # over the 1 MiB of an API body once inflated: refused, inflation stopped there
    bomb = gzip.compress(b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}')
    resp = await client.post("/api/webhooks", data=bomb, headers=headers)
    assert resp.status == 413
    assert_error(await resp.json(), "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    ("encoding", "body", "status", "code"),
    [
        ("br", b"\x0b\x02\x80{}\x03", 415, "UNSUPPORTED_CONTENT_ENCODING"),
        ("zstd", b"(\xb5/\xfd", 415, "UNSUPPORTED_CONTENT_ENCODING"),
        ("compress", b"\x1f\x9d", 415, "UNSUPPORTED_CONTENT_ENCODING"),
        ("gzip, gzip", gzip.compress(gzip.compress(ALERT)), 415, "UNSUPPORTED_CONTENT_ENCODING"),
        ("gzip", b"not gzip at all", 400, "INVALID_CONTENT_ENCODING"),
        ("gzip", gzip.compress(ALERT)[:-12], 400, "INVALID_CONTENT_ENCODING"),  # cut short
        ("deflate", zlib.compress(ALERT) + b"trailing", 400, "INVALID_CONTENT_ENCODING"),
        # 200 KiB fits the 1 MiB limit, but inflating 1000 times over is a bomb's ratio
        ("gzip", gzip.compress(b" " * (200 * 1024)), 413, "PAYLOAD_TOO_LARGE"),
        # hex text compresses about 2:1: sent under the 1 MiB limit, over it once inflated
        ("gzip", gzip.compress(HEX_TEXT), 413, "PAYLOAD_TOO_LARGE"),
    ],
)
async def test_bad_or_unknown_encodings_are_refused_clearly(
    client: TestClient, account: Account, redis: ArqRedis, encoding: str, body: bytes, status: int, code: str
) -> None:
    webhook = await create(client, account)
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    resp = await client.post(path_of(webhook), data=body, headers=headers)
    assert resp.status == status, await resp.text()
    assert_error(await resp.json(), code)
    if status == 415:
        assert resp.headers["Accept-Encoding"] == "gzip, deflate"
    assert await redis.zcard("arq:queue") == 0


# --- gzip bombs against a real process ---------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> Iterator[bytes]:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    yield b"".join(squeeze.compress(zeros) for _ in range(BOMB_MIB)) + squeeze.flush()


def inflation_cpu_seconds(bomb: bytes) -> float:
    """CPU seconds this machine needs to inflate one bomb, in bounded steps as a server would."""
    start = time.process_time()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = bomb
    while data:
        inflater.decompress(data, 1024 * 1024)
        data = inflater.unconsumed_tail
    return time.process_time() - start


async def post_raw(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bool]:
    """POST over a raw socket; answers the status and whether the connection still served a
    /healthz sent after it (it does once the server is done with the first request's body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body
        )
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        healthy = (await reader.readline()).startswith(b"HTTP/1.1 200")
        return status, healthy
    except (ConnectionError, asyncio.IncompleteReadError):
        return status, False
    finally:
        writer.close()


async def healthz(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


@pytest.fixture(scope="module")
def api(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    log = Path(tmp_path_factory.mktemp("bombs")) / "api.log"
    server = ApiProcess(services, log, MONODUTY_REQUIRE_HTTPS="off", MONODUTY_NTFY_URL="http://127.0.0.1:9")
    yield server
    server.stop()


async def known_token(api: ApiProcess, pool: asyncpg.Pool) -> str:
    account = await new_account(pool)
    hook = {"name": "Bombed", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "t"}}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{api.url}/api/webhooks", json=hook, headers=account.headers) as resp,
    ):
        assert resp.status == 201, await resp.text()
        return (await resp.json())["webhook"]["webhook_url"].rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("target", "status"),
    [("unknown token", 404), ("known token", 413), ("/api/webhooks without a key", 401)],
)
async def test_gzip_bombs_are_refused_without_inflating_them(
    api: ApiProcess, pool: asyncpg.Pool, redis: ArqRedis, bomb: bytes, target: str, status: int
) -> None:
    path = {
        "unknown token": "/" + "u" * 40,
        "known token": "/" + await known_token(api, pool),
        "/api/webhooks without a key": "/api/webhooks",
    }[target]
    one_bomb = inflation_cpu_seconds(bomb)
    server = psutil.Process(api.proc.pid)
    before = server.cpu_times()
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    answers = await asyncio.gather(*(post_raw(api.port, path, bomb, headers) for _ in range(BOMBS)))
    # Each connection served /healthz after its bomb, so the server was done with every body
    # (read, inflated or thrown away); a connection it closed instead stopped its body too.
    assert [answer for answer, _ in answers] == [status] * BOMBS
    assert await asyncio.wait_for(healthz(api.port), timeout=30) == 200
    after = server.cpu_times()
    spent = (after.user - before.user) + (after.system - before.system)
    # Inflating the eight would cost eight times one_bomb; the server did less than one.
    assert spent < one_bomb, (
        f"server spent {spent:.2f} s CPU on {BOMBS} bombs; one inflation is {one_bomb:.2f} s"
    )
    assert await redis.zcard("arq:queue") == 0
