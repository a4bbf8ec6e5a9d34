"""Action links (engine.incidents.channel_actions): a signed grant for one message, as one person;
forged, altered and expired ones are refused alike; acting on a bundle acts on each of its
incidents, with the channel in the timeline, and doing it again changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.alerts import lifecycle
from engine.errors import Forbidden
from engine.incidents import actions, channel_actions
from engine.incidents.channel_actions import Action
from engine.oncall import escalation
from tests.support.escalation import new_policy, open_incident, step
from tests.support.factories import WEBHOOK, Account, create, new_account
from tests.support.teams import add_member, new_team

SECRET = "s" * 40
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_token_carries_its_grant_and_nothing_else_verifies() -> None:
    grant = channel_actions.grant_for(uuid.uuid4(), uuid.uuid4(), T0, frozenset({Action.ACKNOWLEDGE}))
    token = channel_actions.token(SECRET, grant)
    assert channel_actions.redeem(SECRET, token, T0 + timedelta(hours=1)) == grant
    payload, signature = token.split(".")
    tampered = ("A" if payload[0] != "A" else "B") + payload[1:]
    for bad in (f"{tampered}.{signature}", payload, f"{payload}.{signature[:-1]}x", "", "..."):
        with pytest.raises(Forbidden) as refused:
            channel_actions.redeem(SECRET, bad, T0)
        assert refused.value.code == "ACTION_LINK_INVALID"
    with pytest.raises(Forbidden):
        channel_actions.redeem("t" * 40, token, T0)  # another server's key
    with pytest.raises(Forbidden):
        channel_actions.redeem(SECRET, token, T0 + timedelta(hours=24))  # expired
    with pytest.raises(Forbidden):
        channel_actions.redeem(None, token, T0)  # no key: no links at all


async def paging_one_person(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> tuple[Account, dict[str, Any]]:
    """A responder, and a webhook of their team whose policy pages them (email at once)."""
    oncall = await new_account(pool)
    team = await new_team(client, account)
    await add_member(client, account, team["id"], oncall, "responder")
    policy = await new_policy(client, account, step(30, oncall), team_id=team["id"])
    body = {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    return oncall, await create(client, account, body)


async def test_acting_on_a_bundle_acknowledges_each_incident_once_via_its_channel(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    oncall, webhook = await paging_one_person(client, pool, account)
    incidents = [await open_incident(pool, webhook, T0, key=key) for key in ("db", "disk")]
    async with pool.acquire() as conn:
        await escalation.sweep(conn, T0)
        bundle = await conn.fetchval(
            "SELECT id FROM deliveries WHERE target = $1 AND kind = 'bundle'", oncall.user.email
        )
    grant = channel_actions.grant_for(bundle, oncall.user.id, T0, frozenset({Action.ACKNOWLEDGE}))

    async with pool.acquire() as conn:
        with pytest.raises(Forbidden):  # not an action the link allows
            await channel_actions.act(conn, grant, Action.RESOLVE, "push", T0)
        done = await channel_actions.act(conn, grant, Action.ACKNOWLEDGE, "push", T0)
        again = await channel_actions.act(conn, grant, Action.ACKNOWLEDGE, "push", T0)
        rows = await conn.fetch(
            "SELECT i.status, e.user_id, e.text FROM incidents i"
            " JOIN incident_events e ON e.incident_id = i.id AND e.kind = 'acknowledged'"
            " WHERE i.id = ANY($1)",
            incidents,
        )
    assert sorted(done.changed) == sorted(incidents) and done.unchanged == []
    assert again.changed == [] and sorted(again.unchanged) == sorted(incidents)
    assert [(r["status"], r["user_id"], r["text"]) for r in rows] == [
        ("acknowledged", oncall.user.id, "via push")
    ] * 2


async def test_a_bundle_acts_only_on_the_incidents_its_text_named(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    oncall, webhook = await paging_one_person(client, pool, account)
    first, second = [await open_incident(pool, webhook, T0, key=key) for key in ("db", "disk")]
    async with pool.acquire() as conn:
        await escalation.sweep(conn, T0)
        bundle = await conn.fetchval(
            "SELECT id FROM deliveries WHERE target = $1 AND kind = 'bundle'", oncall.user.email
        )
        # The first is acknowledged before the bundle goes out: its text names only the second.
        await actions.acknowledge(conn, account.user.id, first, T0)
        assert await lifecycle.start_attempt(conn, bundle) is not None
        grant = channel_actions.grant_for(bundle, oncall.user.id, T0)
        done = await channel_actions.act(conn, grant, Action.RESOLVE, "SMS reply", T0)
        statuses = dict(
            await conn.fetch("SELECT id, status FROM incidents WHERE id = ANY($1)", [first, second])
        )
    assert done.changed == [second]
    assert statuses == {first: "acknowledged", second: "resolved"}
