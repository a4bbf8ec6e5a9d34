"""The dev-mode outbox (engine/channels/outbox.py) stands in for every channel: the registry
needs to be told how to make it, and it keeps what a real page carries to act on it (the links,
the reply code, the call's keys) so a dev user can acknowledge from it. What it records is
checked end to end here, in tests/test_inbound.py and tests/test_cli.py (`monoduty outbox`).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue
from engine.channels.call import MENU
from engine.channels.registry import build_channels
from engine.incidents import actions
from engine.oncall import escalation, throttles
from engine.settings import Settings
from tests.support.escalation import new_policy, open_incident, step, verify_phones
from tests.support.factories import WEBHOOK, Account, create, new_account, run_worker
from tests.support.teams import new_team


async def test_outbox_mode_needs_a_factory(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="outbox_factory"):
        build_channels(Settings(dev=True), http_session)


async def test_the_outbox_shows_the_links_and_codes_a_real_page_carries_and_its_link_acknowledges(
    client: TestClient, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, account: Account
) -> None:
    """In dev a person paged by a policy is emailed at once, texted a minute later and called after
    three: the outbox keeps the email's action links, the SMS's reply line and the call's key menu,
    and the email's acknowledge link, opened and confirmed, acknowledges the incident."""
    person = await new_account(pool, phone=f"+1646{uuid.uuid4().int % 10**7:07d}")  # email 0, SMS 1, call 3
    await verify_phones(pool, person)
    team = await new_team(client, account, members={"responder": person})
    policy = await new_policy(client, account, step(30, person), team_id=team["id"])
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    now = datetime.now(UTC)
    incident_id = await open_incident(pool, webhook, now)
    async with pool.acquire() as conn:
        for later in (0, 3):  # the step, then its SMS and call rules
            await escalation.sweep(conn, now + timedelta(minutes=later), throttles=throttles.NONE)
        sent = await conn.fetch(
            "SELECT DISTINCT delivery_id FROM pages WHERE incident_id = $1 AND delivery_id IS NOT NULL",
            incident_id,
        )
    for row in sent:
        await queue.enqueue_delivery(redis, str(row["delivery_id"]))
    await run_worker(settings)

    resp = await client.get("/api/dev/outbox", headers=account.headers)
    assert resp.status == 200, await resp.text()
    assert person.user.phone is not None
    mine = {
        m["channel"]: m
        for m in (await resp.json())["messages"]
        if m["target"] in (person.user.email, person.user.phone)
    }
    assert set(mine) == {"EMAIL", "SMS", "CALL"}
    links = mine["EMAIL"]["actions"]
    assert set(links) == {"page", "acknowledge", "resolve"}
    assert links["acknowledge"].startswith(f"{settings.public_url}/a/")
    assert links["acknowledge"].endswith("?action=acknowledge")
    assert re.fullmatch(r"Reply (\d+)a to ack, \1c to close, \1e to escalate", mine["SMS"]["reply"])
    assert mine["SMS"]["actions"] is None  # a text carries its code, not links
    assert (mine["CALL"]["reply"], mine["CALL"]["actions"]) == (MENU, None)
    assert mine["EMAIL"]["reply"] is None

    # A dev user clicks Acknowledge: the page asks to confirm (nothing changes), the POST acts.
    path = links["acknowledge"].removeprefix(settings.public_url)
    page = await client.get(path, headers={"Accept": "text/html"})
    assert page.status == 200 and "Acknowledge" in await page.text()
    assert await status_of(pool, incident_id) == "triggered"
    done = await client.post(path, headers={"Accept": "text/html"})
    assert done.status == 200, await done.text()
    assert await status_of(pool, incident_id) == "acknowledged"
    async with pool.acquire() as conn:
        by = await conn.fetchval("SELECT acknowledged_by_user FROM incidents WHERE id = $1", incident_id)
        await actions.resolve(conn, account.user.id, incident_id, datetime.now(UTC))
    assert by == person.user.id


async def status_of(pool: asyncpg.Pool, incident_id: uuid.UUID) -> str:
    async with pool.acquire() as conn:
        status: str = await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id)
    return status
