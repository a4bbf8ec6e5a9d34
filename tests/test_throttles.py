"""Throttles (engine.oncall.throttles): repeat-until-acknowledged cannot become a flood. One
person paged every 10 s for 10 minutes by new incidents gets at most one message a minute per
contact method, 5 SMS and 3 calls in any 15 minutes; every incident still reaches them, in the
bundles that go when the throttle allows, and the timeline says what was held and for how long."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.incidents import actions
from engine.oncall import escalation
from engine.oncall.throttles import Limit, Throttles, held_until
from engine.settings import Settings, SettingsError
from tests.support.escalation import new_policy, open_incident, step, verify_phones
from tests.support.factories import WEBHOOK, Account, create, new_account
from tests.support.teams import add_member, new_team

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_next_message_waits_for_the_tightest_window() -> None:
    limits = [Limit(1, 60), Limit(3, 900)]
    assert held_until(limits, [], at(0)) is None
    assert held_until(limits, [at(0)], at(30)) == at(60)  # the gap
    assert held_until(limits, [at(0)], at(60)) is None
    # Three in the last 15 minutes: the next when the oldest of them leaves the window.
    assert held_until(limits, [at(600), at(300), at(100)], at(700)) == at(1000)
    assert held_until(limits, [at(600), at(300), at(100)], at(1000)) is None


def test_windows_are_configurable_and_bad_ones_refused() -> None:
    settings = Settings.from_env({"MONODUTY_THROTTLE_SMS": "2/10m, 4/1h", "MONODUTY_THROTTLE_CALL": "off"})
    throttles = Throttles.of(settings)
    assert throttles.limits("SMS") == (Limit(1, 60), Limit(2, 600), Limit(4, 3600))
    assert throttles.limits("CALL") == (Limit(1, 60),)
    assert Throttles.of(Settings()).limits("CALL") == (
        Limit(1, 60),
        Limit(3, 900),
        Limit(7, 3600),
        Limit(15, 10800),
    )
    for bad in ("3", "3/", "0/15m", "3/15x", "three/1h", "3/-1m"):
        with pytest.raises(SettingsError, match="MONODUTY_THROTTLE_SMS"):
            Settings.from_env({"MONODUTY_THROTTLE_SMS": bad})


async def sent(pool: asyncpg.Pool, channel: str, target: str) -> list[asyncpg.Record]:
    """The page deliveries to one contact, with when they went and how many incidents each said."""
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT d.id, max(p.sent_at) AS sent_at, count(DISTINCT p.incident_id) AS incidents"
            " FROM deliveries d JOIN pages p ON p.delivery_id = d.id"
            " WHERE d.channel = $1 AND d.target = $2 AND p.status = 'sent' GROUP BY d.id ORDER BY 2",
            channel,
            target,
        )


async def test_a_page_every_10_seconds_for_10_minutes_is_throttled_and_bundled(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    phone = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    oncall = await new_account(pool, phone=phone)  # the default rules: email 0, SMS 1 min, call 3 min
    await verify_phones(pool, oncall)
    team = await new_team(client, account)
    await add_member(client, account, team["id"], oncall, "responder")
    policy = await new_policy(client, account, step(60, oncall), team_id=team["id"])
    body = {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    webhook = await create(client, account, body)

    incidents = []
    for tick in range(0, 20 * 60, 10):  # a sweep every 10 s for 20 minutes; a new incident for the first 10
        if tick < 600:
            incidents.append(await open_incident(pool, webhook, at(tick), key=f"disk-{tick}"))
        async with pool.acquire() as conn:
            await escalation.sweep(conn, at(tick))

    for channel, most in (("SMS", 5), ("CALL", 3)):
        messages = await sent(pool, channel, phone)
        times = [m["sent_at"] for m in messages]
        in_first_ten = [t for t in times if t < at(600)]
        assert 1 < len(in_first_ten) <= most, (channel, in_first_ten)
        assert all(b - a >= timedelta(seconds=60) for a, b in itertools.pairwise(times))
        for start in times:  # no 15-minute window holds more than allowed
            assert len([t for t in times if start <= t < start + timedelta(minutes=15)]) <= most
        # Every incident reached them, most of them in bundles (60 incidents, a handful of messages).
        assert sum(m["incidents"] for m in messages) == len(incidents)
        assert max(m["incidents"] for m in messages) > 1

    async with pool.acquire() as conn:
        held = await conn.fetch(
            "SELECT text FROM incident_events WHERE incident_id = ANY($1) AND kind = 'page_held'", incidents
        )
        for incident_id in incidents:
            await actions.resolve(conn, account.user.id, incident_id, at(1200))
    masked = f"{phone[:5]}•••{phone[-4:]}"
    texts = {r["text"] for r in held}
    assert any(t.startswith(f"SMS to {masked} held ") and t.endswith(" s by throttle") for t in texts), texts
    assert not any(phone in t for t in texts)  # the number itself is never written out
