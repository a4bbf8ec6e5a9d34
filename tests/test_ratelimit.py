"""Rate limits: N+1 calls in a window give exactly one 429 with the headers, across processes too."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.auth.accounts import MAX_FAILURES
from engine.ratelimit import FailureCounter
from engine.settings import RateLimit, Settings
from tests.support.factories import Account, assert_error, create, make_client, new_account, path_of
from tests.support.processes import ApiProcess, wait_until
from tests.support.services import Services
from tests.support.sessions import PASSWORD, web_user

POLICY = re.compile(r'^"api";q=5;w=60$')
STATE = re.compile(r'^"api";r=(\d+);t=(\d+)$')


async def test_api_limit_n_plus_one_gives_exactly_one_429(
    settings: Settings, redis: ArqRedis, account: Account, other_account: Account
) -> None:
    client = await make_client(settings.with_(rate_limit_api=RateLimit(5, 60)))
    try:
        responses = [await client.get("/api/webhooks", headers=account.headers) for _ in range(6)]
        statuses = [r.status for r in responses]
        assert statuses == [200] * 5 + [429]
        ok, limited = responses[0], responses[5]
        assert POLICY.match(ok.headers["RateLimit-Policy"])
        assert STATE.match(ok.headers["RateLimit"]).group(1) == "4"  # type: ignore[union-attr]
        assert POLICY.match(limited.headers["RateLimit-Policy"])
        remaining, reset = STATE.match(limited.headers["RateLimit"]).groups()  # type: ignore[union-attr]
        assert remaining == "0" and 0 < int(reset) <= 60
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert_error(await limited.json(), "RATE_LIMITED")
        # nothing half-done: a refused create creates nothing
        body = {"name": "Refused", "notificationTypes": ["EMAIL"]}
        refused = await client.post("/api/webhooks", json=body, headers=account.headers)
        assert refused.status == 429
        # the limit is per caller: another key is unaffected
        assert (await client.get("/api/webhooks", headers=other_account.headers)).status == 200
    finally:
        await client.close()
    fresh = await make_client(settings)
    try:
        listing = await (await fresh.get("/api/webhooks", headers=account.headers)).json()
        assert listing["total"] == 0
    finally:
        await fresh.close()


async def test_made_up_keys_do_not_escape_the_limit(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    """Each made-up key would be a fresh bucket of the per-key limit; failed keys also count per
    address, and past the limit they are refused before any database lookup."""
    client = await make_client(settings.with_(rate_limit_api=RateLimit(3, 60)))
    try:
        statuses = []
        for n in range(5):
            headers = {"Authorization": f"Bearer md_live_made-up-key-{n:04d}-{'x' * 30}"}
            statuses.append((await client.get("/api/webhooks", headers=headers)).status)
        assert statuses == [401, 401, 401, 429, 429]
        limited = await client.get("/api/webhooks", headers={"Authorization": "Bearer md_live_another"})
        assert limited.status == 429
        assert limited.headers["RateLimit-Policy"] == '"key-failures";q=3;w=60'
        assert int(limited.headers["Retry-After"]) >= 1
        assert_error(await limited.json(), "RATE_LIMITED")
    finally:
        await client.close()


async def test_guessing_webhook_urls_is_limited_per_address(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    """Unknown tokens count per address; a known, cached URL is not slowed or refused by it."""
    client = await make_client(settings.with_(rate_limit_inbound=RateLimit(3, 60)))
    try:
        webhook = await create(client, account)
        assert (await client.post(path_of(webhook), json={"title": "warm"})).status == 202
        guesses = [await client.post(f"/{'g' * 20}{n:012d}", json={"title": "guess"}) for n in range(5)]
        assert [r.status for r in guesses] == [404, 404, 404, 429, 429]
        assert guesses[-1].headers["RateLimit-Policy"] == '"token-failures";q=3;w=60'
        assert_error(await guesses[-1].json(), "RATE_LIMITED")
        # the real, cached URL from the same address still works
        assert (await client.post(path_of(webhook), json={"title": "real"})).status == 202
    finally:
        await client.close()


async def test_inbound_over_the_limit_gets_429_and_nothing_is_queued(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    client = await make_client(settings.with_(rate_limit_inbound=RateLimit(3, 60)))
    try:
        webhook = await create(client, account)
        responses = [await client.post(path_of(webhook), json={"title": f"n{i}"}) for i in range(6)]
        assert [r.status for r in responses] == [202, 202, 202, 429, 429, 429]
        limited = responses[-1]
        assert limited.headers["RateLimit-Policy"] == '"inbound";q=3;w=60'
        assert limited.headers["RateLimit"].startswith('"inbound";r=0;t=')
        assert int(limited.headers["Retry-After"]) >= 1
        assert_error(await limited.json(), "RATE_LIMITED")
        assert await redis.zcard("arq:queue") == 3
        # the owner hears of the burst once, in the in-app inbox
        inbox = await (await client.get("/api/notifications", headers=account.headers)).json()
        assert [n["kind"] for n in inbox["notifications"]] == ["rate_limited"]
        assert inbox["notifications"][0]["webhook_id"] == webhook["id"]
    finally:
        await client.close()


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_the_owner_hears_of_each_burst_of_refusals_once(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    """However many alerts a burst refuses, at once or one by one, the owner's inbox gets one
    notice of it; the next window's burst gets one of its own."""
    client = await make_client(settings.with_(rate_limit_inbound=RateLimit(2, 5)))
    try:
        webhook = await create(client, account)

        async def post() -> int:
            return (await client.post(path_of(webhook), json={"title": "flood"})).status

        async def notices() -> list[dict]:
            inbox = await (await client.get("/api/notifications", headers=account.headers)).json()
            return [n for n in inbox["notifications"] if n["kind"] == "rate_limited"]

        # first window: 2 accepted, 10 refused at once
        assert sorted(await asyncio.gather(*(post() for _ in range(12)))) == [202] * 2 + [429] * 10
        assert len(await notices()) == 1

        # refused one by one until the window ends; the next alert opens a new window
        async def accepted() -> bool:
            return await post() == 202

        await wait_until(accepted, "the next window", timeout=30)
        assert len(await notices()) == 1
        # second window: the 2nd accepted, then 10 refused at once
        assert sorted(await asyncio.gather(*(post() for _ in range(11)))) == [202] + [429] * 10
        second = await notices()
        assert len(second) == 2 and {n["webhook_id"] for n in second} == {webhook["id"]}
        unread = await (await client.get("/api/notifications/unread-count", headers=account.headers)).json()
        assert unread["unread_count"] == 2
    finally:
        await client.close()


async def test_two_api_processes_share_one_limit(
    services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    account = await new_account(pool)
    env = {"MONODUTY_RATE_LIMIT_API": "6/minute", "MONODUTY_REQUIRE_HTTPS": "off"}
    servers = [ApiProcess(services, tmp_path / f"api{n}.log", **env) for n in range(2)]
    try:
        async with aiohttp.ClientSession(headers=account.headers) as session:

            async def get(server: ApiProcess) -> int:
                async with session.get(f"{server.url}/api/webhooks") as resp:
                    return resp.status

            statuses = await asyncio.gather(*(get(servers[n % 2]) for n in range(7)))
        assert sorted(statuses) == [200] * 6 + [429]  # each process alone would have allowed all 7
    finally:
        for server in servers:
            server.stop()


# The failure counters (engine.ratelimit.FailureCounter): unknown API keys, unknown webhook URLs
# and bad signatures count in fixed windows, like every limit; failed logins in a sliding one.


@pytest.mark.parametrize("sliding", [False, True], ids=["fixed", "sliding"])
async def test_a_failure_counter_refuses_past_its_limit_in_its_kind_of_window(
    redis: ArqRedis, sliding: bool
) -> None:
    counter = FailureCounter("test-failures", RateLimit(3, 600), sliding=sliding)
    for _ in range(3):
        assert await counter.refusal(redis, "198.51.100.7") is None
        await counter.failed(redis, "198.51.100.7")
    refused = await counter.refusal(redis, "198.51.100.7")
    assert refused is not None and not refused.allowed and refused.policy == "test-failures"
    assert await counter.refusal(redis, "198.51.100.8") is None  # per identity

    # Most of the window has gone by; one more failure restarts it only when it slides.
    await redis.pexpire(counter.key("198.51.100.7"), 5_000)
    await counter.failed(redis, "198.51.100.7")
    still = await counter.refusal(redis, "198.51.100.7")
    assert still is not None and (still.reset > 5) is sliding

    await counter.clear(redis, "198.51.100.7")
    assert await counter.refusal(redis, "198.51.100.7") is None


async def test_a_login_that_succeeds_clears_its_failures(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    wrong = {"email": who.email, "password": "wrong-password"}
    for _ in range(MAX_FAILURES - 1):
        assert (await client.post("/api/auth/login", json=wrong)).status == 401
    right = await client.post("/api/auth/login", json={"email": who.email, "password": PASSWORD})
    assert right.status == 200
    statuses = [(await client.post("/api/auth/login", json=wrong)).status for _ in range(MAX_FAILURES + 1)]
    assert statuses == [401] * MAX_FAILURES + [429]  # a fresh count: five more failures, not one
