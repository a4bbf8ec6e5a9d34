"""engine.alerts.inbound's storage budget: a sender's call ends within STORAGE_BUDGET_SECONDS of
storage work in all (the README's "202 or 503 + Retry-After within 2 s"), however many Redis calls
it makes and however long each one's own timeouts; the body's reading does not count against it."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue
from engine.alerts import inbound
from engine.settings import RateLimit
from tests.support.factories import Account, create, path_of

LIMIT = RateLimit(100, 60)


async def test_a_redis_that_takes_the_connection_and_never_answers_fails_the_call_at_the_budget(
    silent_server: int, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frozen Redis (SIGSTOP, a dropped route): the kernel completes the handshake, nothing answers.
    With each call's own timeouts far above the budget, the budget alone must end the call."""
    monkeypatch.setattr(queue, "CONNECT_TIMEOUT_SECONDS", 60.0)
    monkeypatch.setattr(queue, "COMMAND_TIMEOUT_SECONDS", 60.0)
    redis = ArqRedis(queue._pool(f"redis://127.0.0.1:{silent_server}/0"))

    async def body() -> bytes:
        return b'{"title": "while redis is frozen"}'

    try:
        async with asyncio.timeout(30) as guard:  # a hang's guard, well past the budget
            with pytest.raises(TimeoutError):  # a STORAGE_DOWN error: the API's 503 + Retry-After
                await inbound.accept_alert(
                    redis, pool, "T" * 32, body, "application/json", limit=LIMIT, client="127.0.0.1"
                )
        assert not guard.expired(), "the call waited on the connection's own timeouts, not the budget"
    finally:
        await redis.aclose()


async def test_the_address_check_before_a_pagerduty_body_is_read_ends_at_the_budget_too(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PagerDuty's /v2/enqueue checks the sender's address in Redis before reading the body that
    names the webhook: that check is bounded as the rest of the call is."""
    monkeypatch.setattr(queue, "CONNECT_TIMEOUT_SECONDS", 60.0)
    monkeypatch.setattr(queue, "COMMAND_TIMEOUT_SECONDS", 60.0)
    redis = ArqRedis(queue._pool(f"redis://127.0.0.1:{silent_server}/0"))
    try:
        async with asyncio.timeout(30) as guard:
            with pytest.raises(TimeoutError):
                await inbound.refuse_guessing(redis, "127.0.0.1", LIMIT)
        assert not guard.expired(), "the check waited on the connection's own timeouts, not the budget"
    finally:
        await redis.aclose()


async def test_a_slow_upload_is_not_counted_against_the_storage_budget(
    client: TestClient,
    account: Account,
    redis: ArqRedis,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sender whose body takes longer to arrive than the budget still gets its alert queued."""
    monkeypatch.setattr(inbound, "STORAGE_BUDGET_SECONDS", 0.2)
    token = path_of(await create(client, account)).strip("/")
    uploaded = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, uploaded.set)  # the upload's pace: 5x the budget

    async def body() -> bytes:
        await uploaded.wait()
        return json.dumps({"title": "a slow upload"}).encode()

    accepted = await inbound.accept_alert(
        redis, pool, token, body, "application/json", limit=LIMIT, client="127.0.0.1"
    )
    assert accepted.queued
