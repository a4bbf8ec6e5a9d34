"""Bundles: pages due together for one person on one contact method from several incidents go as
one message ("3 incidents need you: …"), and a person gets at most one message per contact method
every MONODUTY_PAGE_BUNDLE_SECONDS (5 here); what comes meanwhile waits for it and goes as one.

The engine with the time passed in, then a real worker, the real API and the local push provider."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from engine.alerts import lifecycle
from engine.incidents import actions
from engine.oncall import escalation
from engine.oncall.throttles import Throttles
from engine.settings import Settings
from tests.support.escalation import (
    GAP_5S,
    add_rule,
    clear_rules,
    deliveries_to,
    new_policy,
    open_incident,
    step,
    worker_running,
)
from tests.support.factories import WEBHOOK, Account, create, new_account, path_of
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders
from tests.support.teams import add_member, new_team

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AM = Path(__file__).parent / "data" / "alertmanager"


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


async def sweep(pool: asyncpg.Pool, at: datetime) -> escalation.Swept:
    async with pool.acquire() as conn:
        return await escalation.sweep(conn, at, throttles=GAP_5S)


async def start(pool: asyncpg.Pool, delivery_id: uuid.UUID) -> lifecycle.Attempt | None:
    """What the deliver job would send now (its first attempt)."""
    async with pool.acquire() as conn:
        return await lifecycle.start_attempt(conn, delivery_id)


async def numbers(pool: asyncpg.Pool, incidents: list[uuid.UUID]) -> list[int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, number FROM incidents WHERE id = ANY($1)", incidents)
    by_id = {r["id"]: r["number"] for r in rows}
    return [by_id[i] for i in incidents]


async def resolve(pool: asyncpg.Pool, account: Account, incidents: list[uuid.UUID]) -> None:
    """Leave nothing escalating for the next tests' workers (the database is the session's)."""
    async with pool.acquire() as conn:
        for incident_id in incidents:
            if await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) != "resolved":
                await actions.resolve(conn, account.user.id, incident_id, T0)


async def policy_webhook(
    client: TestClient, account: Account, *people: Account, name: str = "Production"
) -> dict[str, Any]:
    """A webhook of a team of ``people`` whose policy pages them all at step 1 (email at 0)."""
    team = await new_team(client, account)
    for person in people:
        await add_member(client, account, team["id"], person, "responder")
    policy = await new_policy(client, account, step(30, *people), team_id=team["id"])
    return await create(
        client, account, {**WEBHOOK, "name": name, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )


async def test_pages_due_together_for_one_person_are_one_message_that_lists_what_is_still_open(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    oncall, other = await new_account(pool), await new_account(pool)
    webhook = await policy_webhook(client, account, oncall, other)
    incidents = [await open_incident(pool, webhook, T0, key=key) for key in ("db", "disk", "api")]

    await sweep(pool, T0)
    (bundle,) = await deliveries_to(pool, oncall.user.email)
    assert bundle["kind"] == "bundle"
    assert bundle["incidents"] == sorted(incidents)  # every incident's page points at the one message
    assert len(await deliveries_to(pool, other.user.email)) == 1  # each person gets their own

    attempt = await start(pool, bundle["id"])
    assert attempt is not None
    first, second, third = await numbers(pool, incidents)
    assert attempt.message.title == (
        f"3 incidents need you: #{first} db down, #{second} disk down, #{third} api down"
    )
    assert f"#{second} [ERROR] disk down" in attempt.message.body.splitlines()
    assert attempt.message.webhook_name == "Production"
    # Each incident's timeline shows the one message it went out in.
    resp = await client.get(f"/api/incidents/{incidents[2]}", headers=account.headers)
    timeline = (await resp.json())["incident"]["timeline"]
    paged = [e for e in timeline if e["delivery"] and e["paged_user_id"] == str(oncall.user.id)]
    assert [e["text"] for e in paged] == [f"EMAIL to {oncall.user.email} (one message for 3 incidents)"]
    assert paged[0]["delivery"]["id"] == str(bundle["id"])
    await resolve(pool, account, incidents)


async def test_the_first_page_of_a_new_incident_leads_the_bundle_ahead_of_repeats(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    """Incident A pages its person, then pages them again every minute (the policy's repeat) while a
    two-minute gap holds the repeat back; incident B opens meanwhile. The message that goes when the
    gap allows is B's first page with A's repeat: B leads it, and it lists B first."""
    oncall = await new_account(pool)  # their email at once, and a push topic at once too
    topic = f"topic-{uuid.uuid4().hex[:8]}"
    await add_rule(client, oncall, "PUSH_NOTIF", topic, 0)
    team = await new_team(client, account)
    await add_member(client, account, team["id"], oncall, "responder")
    policy = await new_policy(client, account, step(1, oncall), repeat=5, team_id=team["id"])
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    gap = Throttles(120.0)

    async def sweep_at(n: float) -> None:
        async with pool.acquire() as conn:
            await escalation.sweep(conn, seconds(n), throttles=gap)

    older = await open_incident(pool, webhook, T0, key="db")
    await sweep_at(0)  # A's first page goes at once
    await sweep_at(60)  # A's step repeats: held by the gap until 120 s
    newer = await open_incident(pool, webhook, seconds(90), key="disk")
    await sweep_at(90)  # B's first page: held until 120 s as well
    assert [d["incidents"] for d in await deliveries_to(pool, oncall.user.email)] == [[older]]
    async with pool.acquire() as conn:
        first_round = await conn.fetch(
            "SELECT channel, is_repeat FROM pages WHERE incident_id = $1 AND status = 'sent'", older
        )
    # The email and the push of one wave are both A's first page, whichever went first.
    assert sorted(map(tuple, first_round)) == [("EMAIL", False), ("PUSH_NOTIF", False)]
    await sweep_at(120)

    first, bundle = await deliveries_to(pool, oncall.user.email)
    assert (first["kind"], bundle["kind"]) == ("page", "bundle")
    assert bundle["incidents"] == sorted([older, newer])
    async with pool.acquire() as conn:
        lead = await conn.fetchval("SELECT incident_id FROM deliveries WHERE id = $1", bundle["id"])
        flags = dict(
            await conn.fetch("SELECT incident_id, is_repeat FROM pages WHERE delivery_id = $1", bundle["id"])
        )
    assert lead == newer and flags == {newer: False, older: True}
    attempt = await start(pool, bundle["id"])
    assert attempt is not None
    a, b = await numbers(pool, [older, newer])  # A has the lower number: by number alone it would lead
    assert attempt.message.title == f"2 incidents need you: #{b} disk down, #{a} db down"
    assert attempt.message.body.splitlines()[2:] == [f"#{b} [ERROR] disk down", f"#{a} [ERROR] db down"]
    # The push went the same way: one bundle, B first.
    (_, pushed) = await deliveries_to(pool, topic)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT incident_id FROM deliveries WHERE id = $1", pushed["id"]) == newer
    await resolve(pool, account, [older, newer])


async def test_a_bundle_sent_after_some_acknowledges_lists_the_rest_and_none_left_sends_nothing(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    oncall = await new_account(pool)
    webhook = await policy_webhook(client, account, oncall)
    incidents = [await open_incident(pool, webhook, T0, key=key) for key in ("db", "disk", "api")]
    await sweep(pool, T0)
    (bundle,) = await deliveries_to(pool, oncall.user.email)

    async with pool.acquire() as conn:
        await actions.acknowledge(conn, account.user.id, incidents[0], seconds(1))
    attempt = await start(pool, bundle["id"])
    assert attempt is not None
    _, second, third = await numbers(pool, incidents)
    assert attempt.message.title == f"2 incidents need you: #{second} disk down, #{third} api down"

    # A second bundle of which nothing is open any more by its send is cancelled, never sent.
    more = [await open_incident(pool, webhook, seconds(60), key=key) for key in ("cpu", "net")]
    await sweep(pool, seconds(60))
    later = (await deliveries_to(pool, oncall.user.email))[-1]
    assert later["incidents"] == sorted(more)
    async with pool.acquire() as conn:
        for incident_id in more:
            await actions.acknowledge(conn, account.user.id, incident_id, seconds(61))
    assert await start(pool, later["id"]) is None
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, last_error FROM deliveries WHERE id = $1", later["id"])
    assert row is not None
    assert (row["status"], row["last_error"]) == ("cancelled", "incidents acknowledged")
    await resolve(pool, account, incidents + more)


async def test_one_message_per_window_per_contact_method_and_what_waits_goes_together(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    oncall, quiet = await new_account(pool), await new_account(pool)
    webhook = await policy_webhook(client, account, oncall)
    elsewhere = await policy_webhook(client, account, quiet, name="Staging")
    topic = f"push-{uuid.uuid4().hex[:8]}"
    await add_rule(client, oncall, "PUSH_NOTIF", topic, 0)

    first = await open_incident(pool, webhook, T0, key="db")
    await sweep(pool, T0)
    assert [d["kind"] for d in await deliveries_to(pool, oncall.user.email)] == ["page"]

    # 2 s and 3 s later: inside the 5 s window of the last email, so those pages wait for it.
    second = await open_incident(pool, webhook, seconds(2), key="disk")
    swept = await sweep(pool, seconds(2))
    assert len(await deliveries_to(pool, oncall.user.email)) == 1
    held = [w.at for w in swept.wake_ups if w.job_id.startswith("bundle:")]
    assert held == [seconds(5)] * 2  # email and push wait
    # The window is per contact method: push had one too, so it waits as well; another person
    # is not held back by this one's window.
    quiet_incident = await open_incident(pool, elsewhere, seconds(2), key="db")
    await sweep(pool, seconds(2))
    assert len(await deliveries_to(pool, quiet.user.email)) == 1
    third = await open_incident(pool, webhook, seconds(3), key="api")
    await sweep(pool, seconds(3))
    await sweep(pool, seconds(4.9))
    assert len(await deliveries_to(pool, oncall.user.email)) == 1

    await sweep(pool, seconds(5))
    emails = await deliveries_to(pool, oncall.user.email)
    assert [(d["kind"], d["incidents"]) for d in emails] == [
        ("page", [first]),
        ("bundle", sorted([second, third])),
    ]
    pushes = await deliveries_to(pool, topic)
    assert [(d["kind"], d["incidents"]) for d in pushes] == [
        ("page", [first]),
        ("bundle", sorted([second, third])),
    ]
    await resolve(pool, account, [first, second, third, quiet_incident])


async def test_sweeps_at_once_send_each_page_once_and_each_person_one_message_a_window(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    people = [await new_account(pool) for _ in range(3)]
    webhook = await policy_webhook(client, account, *people)
    incidents = [await open_incident(pool, webhook, T0, key=f"k{n}") for n in range(40)]

    async def pending() -> int:
        async with pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pages WHERE incident_id = ANY($1) AND status = 'pending'", incidents
                )
            )

    windows = 0
    while (windows == 0 or await pending()) and windows < 10:  # four sweeps at once, at T0, T0 + 5 s, ...
        await asyncio.gather(*(sweep(pool, seconds(5 * windows)) for _ in range(4)))
        windows += 1
    for person in people:
        async with pool.acquire() as conn:
            pages = await conn.fetch(
                "SELECT incident_id, status, delivery_id, sent_at FROM pages"
                " WHERE user_id = $1 AND channel = 'EMAIL' ORDER BY sent_at",
                person.user.id,
            )
        assert sorted(p["incident_id"] for p in pages) == sorted(incidents)
        assert {p["status"] for p in pages} == {"sent"}
        # Far fewer messages than incidents (one per window at most), and never two within 5 s.
        sent_at = sorted({p["sent_at"] for p in pages})
        assert len({p["delivery_id"] for p in pages}) == len(sent_at) <= windows < 10
        assert all(b - a >= timedelta(seconds=5) for a, b in itertools.pairwise(sent_at))
    await resolve(pool, account, incidents)


async def test_a_worker_pages_a_group_of_alerts_as_one_push(
    live: TestClient,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    oncall = await new_account(pool)
    await clear_rules(live, oncall)
    topic = f"oncall-{uuid.uuid4().hex[:8]}"
    await add_rule(live, oncall, "PUSH_NOTIF", topic, 0)
    team = await new_team(live, account, members={"responder": oncall})
    policy = await new_policy(live, account, step(30, oncall), team_id=team["id"])
    webhook = await create(
        live,
        account,
        {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"], "dedupBy": "alert"},
    )
    group = json.loads((AM / "04-firing.json").read_text())  # one group of three firing alerts

    async with worker_running(provider_settings.with_(escalation_sweep_seconds=1)):
        resp = await live.post(path_of(webhook), json=group)
        assert resp.status == 202, await resp.text()
        await wait_until(lambda: any(r.target == topic for r in fake_providers.requests), "the push")
        async with pool.acquire() as conn:
            incidents = await conn.fetch(
                "SELECT id FROM incidents WHERE webhook_id = $1", uuid.UUID(webhook["id"])
            )
        assert len(incidents) == 3
        async with pool.acquire() as conn:
            sent = await conn.fetch(
                "SELECT status, delivery_id FROM pages WHERE incident_id = ANY($1)",
                [r["id"] for r in incidents],
            )
    # The three incidents' pages were all sent, as one delivery: the one push.
    assert [p["status"] for p in sent] == ["sent"] * 3 and len({p["delivery_id"] for p in sent}) == 1
    pushes = [r for r in fake_providers.requests if r.target == topic]
    assert len(pushes) == 1
    assert pushes[0].headers["Title"].startswith("[CRITICAL] 3 incidents need you: #")
    await resolve(pool, account, [r["id"] for r in incidents])
