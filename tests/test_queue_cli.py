"""`monoduty queue` on a Redis holding real arq jobs in every state, made by a real worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue, queue_inspect
from engine.observability import presence
from engine.settings import NtfySettings, Settings
from tests.support.factories import Account, make_client
from tests.support.processes import monoduty, monoduty_env, wait_until
from tests.support.providers import FakeProviders, Reply
from tests.support.services import Services
from workers.worker import build_worker

SECRET = "sk_live_4f9a8b7c6d5e4f3a2b1c0d9e"


def run_queue(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return monoduty("queue", *args, env=env, check=False, stdin=stdin, timeout=60)


async def counts(env: dict[str, str]) -> dict:
    result = await asyncio.to_thread(run_queue, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def queue_settings(settings: Settings, fake_providers: FakeProviders) -> Settings:
    # One job at a time, so that while a delivery hangs, later jobs stay queued.
    return settings.with_(
        dev=False,
        ntfy=NtfySettings(fake_providers.url),
        worker_concurrency=1,
        provider_timeout=60.0,
        job_timeout=120,
        max_attempts=10,
    )


@pytest.fixture
async def api(queue_settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    client = await make_client(queue_settings)
    yield client
    await client.close()


async def push_webhook(client: TestClient, account: Account, topic: str) -> str:
    resp = await client.post(
        "/api/webhooks",
        json={
            "name": f"Push {topic}",
            "notificationTypes": ["PUSH_NOTIF"],
            "targetChannels": {"push": topic},
        },
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["webhook"]["webhook_url"].removeprefix("http://monoduty.test")


async def alert(client: TestClient, url: str) -> str:
    resp = await client.post(url, json={"title": "disk full", "severity": "warning"})
    assert resp.status == 202
    return (await resp.json())["alert_id"]


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_queue_counts_show_retry_and_purge(
    api: TestClient,
    account: Account,
    redis: ArqRedis,
    queue_settings: Settings,
    services: Services,
    fake_providers: FakeProviders,
) -> None:
    env = monoduty_env(MONODUTY_REDIS_URL=services.redis_url)
    fake_providers.script("always-429", Reply(status=429, headers={"Retry-After": "3600"}))
    fake_providers.script("hangs", Reply(hang=True))
    ok_url = await push_webhook(api, account, "fine")
    retry_url = await push_webhook(api, account, "always-429")
    hang_url = await push_webhook(api, account, "hangs")

    worker = build_worker(queue_settings, handle_signals=False, cron_jobs=[])
    task = asyncio.create_task(worker.async_run())
    try:
        # completed: two alerts, one delivered (its first attempt made in process_alert), one whose
        # delivery was told to come back in an hour (deferred, as a deliver job).
        await alert(api, ok_url)
        await alert(api, retry_url)

        async def settled() -> bool:
            n = (await queue_inspect.summarize(redis, queue_settings.queue_name)).functions
            done = "process_alert" in n and n["process_alert"].completed == 2
            return done and "deliver" in n and n["deliver"].deferred == 1

        await wait_until(settled, "both alerts done, one delivery deferred", timeout=30)
        # failed: a job that raises (a malformed alert id); its body holds a secret.
        for bad in ("bad-1", "bad-2"):
            await redis.enqueue_job(
                queue.PROCESS_ALERT,
                {"alert_id": bad, "webhook_id": bad, "body": f"token={SECRET} disk full", "received_at": "x"},
                _job_id=bad,
            )

        async def both_failed() -> bool:
            return await redis.exists("arq:result:bad-1", "arq:result:bad-2") == 2

        await wait_until(both_failed, "the bad jobs to fail")
        # in progress: an alert whose first send hangs holds the only slot, so two more alerts wait.
        await alert(api, hang_url)
        await wait_until(lambda: fake_providers_has(fake_providers, "hangs"), "the hanging send")
        queued_ids = [await alert(api, ok_url), await alert(api, ok_url)]

        summary = await counts(env)
        assert summary["functions"] == {
            "process_alert": {"queued": 2, "deferred": 0, "in_progress": 1, "completed": 2, "failed": 2},
            "deliver": {"queued": 0, "deferred": 1, "in_progress": 0, "completed": 0, "failed": 0},
        }
        assert summary["totals"] == {
            "queued": 2,
            "deferred": 1,
            "in_progress": 1,
            "completed": 2,
            "failed": 2,
        }
        assert summary["oldest_queued_seconds"] is not None and summary["oldest_queued_seconds"] >= 0
        assert summary["workers_alive"] == 1
        assert "j_complete=" in summary["health_check"]

        table = (await asyncio.to_thread(run_queue, env=env)).stdout
        assert "process_alert" in table and "in progress" in table
        assert "workers alive: 1" in table and "oldest queued job: waiting" in table

        # show: function, masked arguments, tries, error.
        shown = await asyncio.to_thread(run_queue, "show", "bad-1", "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert detail["function"] == "process_alert" and detail["state"] == "failed"
        assert detail["tries"] == 1 and "ValueError" in detail["error"]
        assert detail["enqueued_at"] and detail["finished_at"]
        assert "disk full" in detail["args"][0]["body"] and SECRET not in shown.stdout
        queued = json.loads(
            (await asyncio.to_thread(run_queue, "show", queued_ids[0], "--json", env=env)).stdout
        )
        assert queued["state"] == "queued" and queued["tries"] == 0
        text = (await asyncio.to_thread(run_queue, "show", "bad-2", env=env)).stdout
        assert "process_alert" in text and SECRET not in text
        missing = await asyncio.to_thread(run_queue, "show", "no-such-job", env=env)
        assert missing.returncode == 1 and "no job no-such-job" in missing.stderr

        # retry: the failed job is queued again under its id, its result gone.
        retried = await asyncio.to_thread(run_queue, "retry", "bad-1", env=env)
        assert retried.returncode == 0 and "queued again" in retried.stdout
        assert await redis.zscore(queue_settings.queue_name, "bad-1") is not None
        assert not await redis.exists("arq:result:bad-1")
        refused = await asyncio.to_thread(run_queue, "retry", "bad-1", env=env)
        assert refused.returncode == 1 and "nothing to retry" in refused.stderr

        # purge --failed asks first; "no" (or no terminal) keeps everything.
        kept = await asyncio.to_thread(run_queue, "purge", "--failed", env=env, stdin="n\n")
        assert kept.returncode == 1 and await redis.exists("arq:result:bad-2")
        purged = await asyncio.to_thread(run_queue, "purge", "--failed", env=env, stdin="y\n")
        assert purged.returncode == 0 and "deleted 1 failed jobs" in purged.stdout
        assert not await redis.exists("arq:result:bad-2")
        assert (
            "no failed jobs"
            in (await asyncio.to_thread(run_queue, "purge", "--failed", "--yes", env=env)).stdout
        )
        after = (await counts(env))["functions"]["process_alert"]
        assert after["failed"] == 0 and after["queued"] == 3
    finally:
        fake_providers.release()
        await worker.close()
        await asyncio.gather(task, return_exceptions=True)
    assert await presence.count_alive(redis, presence.WORKERS) == 0


async def fake_providers_has(fake: FakeProviders, topic: str) -> bool:
    return any(r.target == topic for r in fake.requests)


def test_queue_needs_redis() -> None:
    result = run_queue(env=monoduty_env())
    assert result.returncode == 1 and "MONODUTY_REDIS_URL" in result.stderr
