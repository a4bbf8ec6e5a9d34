"""The escalation's timers live in PostgreSQL: a worker killed between two steps, and a Redis
flushed of every wake-up job, delay the next step by one cron sweep at most, and it runs once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from tests.support.escalation import add_rule, clear_rules, incident_of, new_policy, pages_of, step
from tests.support.factories import ALERT, WEBHOOK, Account, create, new_account, path_of
from tests.support.faults import WorkerProcess
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services
from tests.support.teams import add_member, new_team

SWEEP_SECONDS = 1


def worker(tmp_path: Path, name: str, services: Services, fake: FakeProviders) -> WorkerProcess:
    return WorkerProcess(
        tmp_path / f"{name}.log",
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_NTFY_URL=fake.url,
        MONODUTY_ESCALATION_SWEEP_SECONDS=str(SWEEP_SECONDS),
    )


def pushes(fake: FakeProviders, topic: str) -> int:
    return sum(1 for r in fake.requests if r.target == topic)


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_the_next_step_survives_a_killed_worker_and_a_flushed_redis_and_runs_once(
    client: TestClient,
    redis: ArqRedis,
    pool: asyncpg.Pool,
    services: Services,
    account: Account,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> None:
    primary, backup = await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"responder": primary})
    await add_member(client, account, team["id"], backup, "responder")
    for person, topic in ((primary, "primary-topic"), (backup, "backup-topic")):
        await clear_rules(client, person)
        await add_rule(client, person, "PUSH_NOTIF", topic, 0)
    # Step 1 waits 6 seconds (delays may be fractions of a minute), step 2 three.
    policy = await new_policy(client, account, step(0.1, primary), step(0.05, backup), team_id=team["id"])
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    first = worker(tmp_path, "first", services, fake_providers)
    second = None
    try:
        resp = await client.post(path_of(webhook), json=ALERT)
        alert_id = (await resp.json())["alert_id"]
        await wait_until(lambda: pushes(fake_providers, "primary-topic") == 1, "step 1 paged", timeout=30)
        incident = await incident_of(pool, alert_id)
        assert incident is not None and incident["escalation_step"] == 0
        due = incident["next_escalation_at"]

        first.kill()  # between the steps, its wake-up job for step 2 queued in Redis
        await redis.flushdb()  # ... and gone
        second = worker(tmp_path, "second", services, fake_providers)

        async def exhausted() -> bool:
            async with pool.acquire() as conn:
                kinds = await conn.fetch(
                    "SELECT kind FROM incident_events WHERE incident_id = $1", incident["id"]
                )
            return "escalation_exhausted" in {k["kind"] for k in kinds}

        await wait_until(exhausted, "the policy to run out", timeout=30)
        async with pool.acquire() as conn:
            escalated = await conn.fetch(
                "SELECT text, created_at FROM incident_events WHERE incident_id = $1 AND kind = 'escalated' "
                "ORDER BY id",
                incident["id"],
            )
        assert [e["text"] for e in escalated] == [
            f"step 1 of 2: paged {primary.user.email}",
            f"step 2 of 2: paged {backup.user.email}",
        ]
        late = escalated[1]["created_at"] - due
        assert timedelta(0) <= late <= timedelta(seconds=SWEEP_SECONDS + 0.5), late
        assert pushes(fake_providers, "primary-topic") == 1
        assert pushes(fake_providers, "backup-topic") == 1
        backup_pages = [p for p in await pages_of(pool, incident["id"]) if p["user_id"] == backup.user.id]
        assert [p["status"] for p in backup_pages] == ["sent"]
    finally:
        first.stop()
        if second is not None:
            second.stop()
