"""An alert answered 202 is stored, whatever its body was: every hostile body an inbound URL
can take (non-UTF-8, NUL bytes, empty, deeply nested JSON of each recognised shape) ends as an
alert row with its deliveries, after a real worker ran.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.settings import RateLimit, Settings
from tests.support.factories import Account, create, path_of, run_worker
from tests.support.faults import TcpProxy
from tests.support.services import Services
from workers.worker import build_worker

DEPTH = 600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for the hundreds of alerts the depth sweep sends."""
    return settings.with_(rate_limit_inbound=RateLimit(10_000, 60))


def nested(depth: int = DEPTH) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE: list[tuple[bytes, str | None]] = [
    (b"", "application/json"),
    (b"", None),
    (b"\xff\xfe\xfd not utf-8 \xc3\x28", "text/plain"),
    (b'{"title": "caf\xe9 \x00 down"}', "application/json"),
    (b"\x00\x00\x00", "application/octet-stream"),
    (b'{"title": "nul \\u0000 and \\ud800"}', "application/json"),
    (nested(), "application/json"),
    (b'{"title": "deep", "details": ' + b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH + b"}", "application/json"),
    (b'{"title": ' + nested() + b"}", "application/json"),
    (b'{"labels": {"a": ' + nested() + b"}}", "application/json"),
    (b'{"alerts": ' + nested() + b', "status": "firing"}', "application/json"),
    (b'{"alerts": [{"labels": ' + b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH + b"}]}", "application/json"),
    (b'{"payload": {"summary": ' + nested() + b'}, "event_action": "trigger"}', "application/json"),
    (b"title=" + b"%5B" * 500, "application/x-www-form-urlencoded"),
    (b"--x\r\nContent-Disposition: form-data; name=title\r\n\r\n\xff\x00\r\n--x--", "multipart/form-data"),
]


@pytest.mark.parametrize(("body", "content_type"), HOSTILE, ids=range(len(HOSTILE)))
async def test_every_accepted_body_becomes_a_stored_alert(
    client: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    settings: Settings,
    body: bytes,
    content_type: str | None,
) -> None:
    webhook = await create(client, account, {"name": "hostile", "notificationTypes": ["EMAIL"]})
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    resp = await client.post(path_of(webhook), data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    alert_id = (await resp.json())["alert_id"]

    await run_worker(settings)

    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT title, status FROM alerts WHERE id = $1", alert_id)
        sent = await conn.fetchval("SELECT count(*) FROM outbox WHERE alert_id = $1", alert_id)
    assert row is not None, "the alert was accepted with 202 and then lost"
    assert row["title"] and row["status"] == "successful" and sent == 1


async def test_json_nested_just_within_the_parsers_reach_is_stored(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Nesting the parser still reads but json.dumps (one frame deeper per level) cannot: the
    window moves with the worker's stack depth, so every depth up to the recursion limit is sent."""
    webhook = await create(client, account, {"name": "deep", "notificationTypes": ["EMAIL"]})
    alert_ids = []
    for depth in range(800, sys.getrecursionlimit() + 1, 2):
        inner = b'{"a": ' * depth + b"1" + b"}" * depth
        for body in (b'{"title": "deep", "details": ' + inner + b"}", b'{"title": ' + nested(depth) + b"}"):
            resp = await client.post(
                path_of(webhook), data=body, headers={"Content-Type": "application/json"}
            )
            assert resp.status == 202, await resp.text()
            alert_ids.append((await resp.json())["alert_id"])

    await run_worker(settings)

    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM alerts WHERE id = ANY($1::uuid[])", alert_ids)
    assert stored == len(alert_ids), f"{len(alert_ids) - stored} accepted alerts were lost"


async def run_with_fault(settings: Settings, alert_id: str, proxy: TcpProxy) -> list[int]:
    """Run a burst worker through ``proxy``; the database goes away (connections cut, new ones
    refused) as the alert's first try starts and is back as the second starts. Answers the tries
    the alert's job had."""
    tries: list[int] = []

    async def on_job_start(ctx: dict[str, Any]) -> None:
        if ctx["job_id"] == alert_id:
            tries.append(ctx["job_try"])
            if ctx["job_try"] == 1:
                await proxy.stop()
            elif ctx["job_try"] == 2:
                await proxy.start()

    through_proxy = settings.with_(database_url=proxy.url(settings.database_url or ""))
    worker = build_worker(through_proxy, burst=True, on_job_start=on_job_start)
    try:
        await asyncio.wait_for(worker.main(), 60)
    finally:
        await worker.close()
    return tries


async def test_an_alert_waits_out_a_database_outage_in_the_worker(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, services: Services
) -> None:
    """PostgreSQL goes away as the worker picks the alert up and is back for the next try: the
    job is deferred, not failed, and the alert is stored and delivered. (A stall longer than the
    job timeout is not covered: arq fails a timed-out job for good.)"""
    webhook = await create(client, account, {"name": "outage", "notificationTypes": ["EMAIL"]})
    resp = await client.post(path_of(webhook), json={"title": "during the outage"})
    alert_id = (await resp.json())["alert_id"]

    proxy = TcpProxy.to_database(services.database_url)
    await proxy.start()
    try:
        tries = await run_with_fault(settings, alert_id, proxy)
    finally:
        await proxy.stop()

    assert tries == [1, 2]
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id)
    assert status == "successful", "the alert was accepted with 202 and lost to the outage"


async def test_a_body_that_arrives_in_pieces_is_read_whole(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A JSON alert near the body limit, sent in pieces: cut after the first piece it would be
    stored as text with the default severity instead of the sender's."""
    webhook = await create(client, account, {"name": "pieces", "notificationTypes": ["EMAIL"]})
    body = json.dumps({"title": "Disk full", "severity": "warning", "pad": "x" * 240_000}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    resp = await client.post(path_of(webhook), data=pieces(), headers={"Content-Type": "application/json"})
    assert resp.status == 202
    alert_id = (await resp.json())["alert_id"]
    await run_worker(settings)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT title, severity, format FROM alerts WHERE id = $1", alert_id)
    assert dict(row) == {"title": "Disk full", "severity": "warning", "format": "generic"}


async def test_a_body_over_the_limit_in_pieces_is_refused(client: TestClient, account: Account) -> None:
    webhook = await create(client, account, {"name": "too big", "notificationTypes": ["EMAIL"]})

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65_536  # 1.25 MiB, no Content-Length: only counting finds it too big

    resp = await client.post(path_of(webhook), data=pieces(), headers={"Content-Type": "text/plain"})
    assert resp.status == 413
    assert (await resp.json())["code"] == "PAYLOAD_TOO_LARGE"
