"""A page's phone call offers keys, and a key pressed acts: 4 acknowledges, 6 resolves, 5 escalates,
1 says the alert again; anything else (or nothing) is "not understood", once, and then escalation
goes on as if the call had not been answered.

End to end: a real worker on a clock 120 times as fast as the real one (tests/test_escalation_e2e.py),
the real API on the same clock, the fake Twilio, and the callee's phone (tests/support/twilio_calls.py)
pressing keys by posting to the call's menu URL with a correct X-Twilio-Signature, or a forged one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.channels import twilio_signature
from engine.channels.call import MENU
from engine.incidents import actions
from engine.settings import Settings
from tests.support.clock import ScaledClock
from tests.support.escalation import add_rule, new_policy, step, verify_phones, worker_running
from tests.support.factories import ALERT, WEBHOOK, Account, create, make_client, new_account, path_of
from tests.support.processes import wait_until
from tests.support.providers import TWILIO_TOKEN, FakeProviders, SmtpServer
from tests.support.teams import add_member, new_team
from tests.support.twilio_calls import PhoneCalls, PlacedCall

RATE = 120  # clock minutes per real half-second
SECRET = "voice-secret-key-0123456789abcdef0123456789"
AM = Path(__file__).parent / "data" / "alertmanager"


@dataclass
class Paging:
    client: TestClient
    clock: ScaledClock
    fake: FakeProviders
    calls: PhoneCalls
    pool: asyncpg.Pool


@dataclass(frozen=True)
class Person:
    account: Account
    phone: str
    topic: str  # a push at once beside every page, to see when they are paged


@contextlib.asynccontextmanager
async def running(
    provider_settings: Settings, fake: FakeProviders, pool: asyncpg.Pool, *, machine_detection: bool = False
) -> AsyncIterator[Paging]:
    """The API and a worker on one fast clock, with action links (a public URL and a secret key)."""
    assert provider_settings.twilio is not None
    clock = ScaledClock(RATE)
    settings = provider_settings.with_(
        secret_key=SECRET,
        escalation_sweep_seconds=1,
        twilio=replace(provider_settings.twilio, machine_detection=machine_detection),
    )
    client = await make_client(settings, clock=clock)
    try:
        async with worker_running(settings, clock):
            yield Paging(client, clock, fake, PhoneCalls(fake, client), pool)
    finally:
        await client.close()


async def person(paging: Paging, *, called: bool = True) -> Person:
    """Someone paged by push and email at once and, when ``called``, phoned at once too."""
    phone = f"+1415{uuid.uuid4().int % 10**7:07d}"
    account = await new_account(paging.pool, phone=None)
    topic = f"topic-{uuid.uuid4().hex[:8]}"
    await add_rule(paging.client, account, "PUSH_NOTIF", topic, 0)
    if called:
        await add_rule(paging.client, account, "CALL", phone, 0)
        await verify_phones(paging.pool, account)
    return Person(account, phone, topic)


async def policy_webhook(
    paging: Paging, owner: Account, *people: Person, delay: float = 4, **extra: Any
) -> dict[str, Any]:
    """A webhook whose policy pages ``people`` one step each, ``delay`` minutes apart."""
    team = await new_team(paging.client, owner)
    for someone in people:
        await add_member(paging.client, owner, team["id"], someone.account, "responder")
    steps = [step(delay, someone.account) for someone in people]
    policy = await new_policy(paging.client, owner, *steps, team_id=team["id"])
    body = {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"], **extra}
    return await create(paging.client, owner, body)


async def alert(paging: Paging, webhook: dict[str, Any], body: object = ALERT) -> list[uuid.UUID]:
    """Send ``body`` to the webhook; the incidents it opened, once stored."""
    resp = await paging.client.post(path_of(webhook), json=body)
    assert resp.status == 202, await resp.text()
    opened: list[uuid.UUID] = await wait_until(lambda: _incidents_of(paging.pool, webhook), "the incidents")
    return opened


async def _incidents_of(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[uuid.UUID]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id FROM incidents WHERE webhook_id = $1 ORDER BY number", uuid.UUID(webhook["id"])
        )
    return [r["id"] for r in rows]


async def the_call(paging: Paging, someone: Person) -> PlacedCall:
    calls = await wait_until(lambda: paging.calls.to(someone.phone), f"the call to {someone.phone}")
    (call,) = calls
    return call


def pushed(paging: Paging, someone: Person) -> int:
    return sum(1 for r in paging.fake.requests if r.target == someone.topic)


async def incident(paging: Paging, owner: Account, incident_id: uuid.UUID) -> dict[str, Any]:
    resp = await paging.client.get(f"/api/incidents/{incident_id}", headers=owner.headers)
    assert resp.status == 200
    found: dict[str, Any] = (await resp.json())["incident"]
    return found


async def tidy(paging: Paging, owner: Account, *incidents: uuid.UUID) -> None:
    """Leave nothing escalating for the next tests' workers (the database is the session's)."""
    async with paging.pool.acquire() as conn:
        for incident_id in incidents:
            if await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) != "resolved":
                await actions.resolve(conn, owner.user.id, incident_id, paging.clock.now())


async def test_4_acknowledges_and_nothing_more_is_sent_to_anyone(
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    pool: asyncpg.Pool,
    account: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        (incident_id,) = await alert(paging, webhook)
        call = await the_call(paging, primary)
        # The call reads the alert, then offers the menu, posting to the public URL.
        assert call.said == ["Monoduty alert from Production Alerts.", "Severity critical. DB down.", MENU]
        assert call.playing is not None and 'action="http://monoduty.test/twilio/voice/' in call.playing

        answered = await paging.calls.press(call, "4")
        assert answered.status == 200
        assert (call.said, call.hung_up) == (["Acknowledged."], True)
        pressed_at = paging.clock.now()
        shown = await incident(paging, account, incident_id)
        assert shown["status"] == "acknowledged"
        assert shown["acknowledged_by"] == {"type": "user", "user_id": str(primary.account.user.id)}
        assert [e["text"] for e in shown["timeline"] if e["kind"] == "acknowledged"] == ["via phone call"]

        # Past when the backup's step would have paged: nothing more, to anyone.
        sent, emailed = len(fake_providers.requests), len(smtp_server.messages)
        await wait_until(
            lambda: (paging.clock.now() - pressed_at).total_seconds() > 10 * 60, "ten minutes", timeout=30
        )
        assert (len(fake_providers.requests), len(smtp_server.messages)) == (sent, emailed)
        assert pushed(paging, backup) == 0
        await tidy(paging, account, incident_id)
    # Neither the grant's token nor the auth token is ever logged; requests are named by route.
    assert call.last is not None
    token = call.last[0].rsplit("/", 1)[-1]
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "/twilio/voice/{token}" in logged
    assert token not in logged and token.split(".")[1] not in logged and TWILIO_TOKEN not in logged


async def test_6_resolves_and_the_resolved_notices_go_out(
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    pool: asyncpg.Pool,
    account: Account,
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary = await person(paging)
        webhook = await policy_webhook(paging, account, primary, delay=60)
        (incident_id,) = await alert(paging, webhook)
        call = await the_call(paging, primary)
        await paging.calls.press(call, "6")
        assert call.said == ["Resolved."] and call.hung_up
        shown = await incident(paging, account, incident_id)
        assert (shown["status"], shown["resolved_by"]["user_id"]) == (
            "resolved",
            str(primary.account.user.id),
        )
        # The people paged are told, on the webhook's notifyOnResolve channels (email and push).
        await wait_until(lambda: pushed(paging, primary) == 2, "the RESOLVED push")
        notice = [r for r in fake_providers.requests if r.target == primary.topic][-1]
        assert f"RESOLVED #{shown['number']}: DB down" in notice.headers["Title"]
        await wait_until(
            lambda: any("RESOLVED #" in str(m["Subject"]) for m in smtp_server.messages), "the RESOLVED email"
        )


async def test_5_pages_the_next_step_at_once_and_a_replayed_press_changes_nothing_more(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup, third = [await person(paging) for _ in range(3)]
        # Ten hours a step: only the key moves the incident on.
        webhook = await policy_webhook(paging, account, primary, backup, third, delay=600)
        (incident_id,) = await alert(paging, webhook)
        call = await the_call(paging, primary)
        await paging.calls.press(call, "5")
        assert call.said == ["Escalated. The next step is paged now."] and call.hung_up
        await wait_until(lambda: pushed(paging, backup) == 1, "the backup paged")

        # Twilio sends the same request again (a retry, or someone replaying it): no second step.
        again = await paging.calls.replay(call)
        assert again.status == 200 and call.said == ["Escalated."]
        shown = await incident(paging, account, incident_id)
        assert shown["status"] == "triggered" and shown["escalation_step"] == 1
        escalated = [e["text"] for e in shown["timeline"] if e["kind"] == "escalated"]
        assert escalated[0].startswith("step 1 of 3")
        assert escalated[1:] == [f"step 2 of 3: paged {backup.account.user.email} (via phone call)"]
        async with pool.acquire() as conn:
            paged_third = await conn.fetchval(
                "SELECT count(*) FROM pages WHERE incident_id = $1 AND user_id = $2",
                incident_id,
                third.account.user.id,
            )
        assert paged_third == 0
        await tidy(paging, account, incident_id)


async def test_no_key_or_a_wrong_one_is_not_understood_once_then_escalation_goes_on(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        (incident_id,) = await alert(paging, webhook)
        call = await the_call(paging, primary)

        await paging.calls.press(call, None)  # the menu times out: Twilio follows its Redirect
        assert call.said == ["Not understood.", MENU] and not call.hung_up
        await paging.calls.press(call, "9")
        assert call.said == ["Not understood. Goodbye."] and call.hung_up

        # The page was not acknowledged: the policy's next step pages the backup on time.
        await wait_until(lambda: pushed(paging, backup) == 1, "the backup paged", timeout=30)
        shown = await incident(paging, account, incident_id)
        assert shown["status"] == "triggered" and shown["escalation_step"] == 1
        await tidy(paging, account, incident_id)


async def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary = await person(paging)
        webhook = await policy_webhook(paging, account, primary, delay=60)
        (incident_id,) = await alert(paging, webhook)
        call = await the_call(paging, primary)

        for signed_with in ("not-the-auth-token", ""):
            refused = await paging.calls.press(call, "4", signed_with=signed_with)
            assert refused.status == 403
            body = json.loads(refused.body)
            assert (body["success"], body["code"]) == (False, "TWILIO_SIGNATURE_INVALID")
            assert TWILIO_TOKEN not in refused.body
        # Signed over the address the request reached rather than the one Twilio was given.
        assert call.last is not None
        url, params = call.last
        path = url.removeprefix("http://monoduty.test")
        reached = str(paging.client.make_url(path))
        signature = twilio_signature.signature(TWILIO_TOKEN, reached, params.items())
        resp = await paging.client.post(path, data=params, headers={twilio_signature.HEADER: signature})
        assert resp.status == 403
        # Twilio's signature, but over a token altered on the way: the grant is refused.
        forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
        signature = twilio_signature.signature(TWILIO_TOKEN, forged, params.items())
        resp = await paging.client.post(
            forged.removeprefix("http://monoduty.test"),
            data=params,
            headers={twilio_signature.HEADER: signature},
        )
        assert (resp.status, (await resp.json())["code"]) == (403, "ACTION_LINK_INVALID")

        shown = await incident(paging, account, incident_id)
        assert shown["status"] == "triggered" and shown["acknowledged_at"] is None
        assert not [e for e in shown["timeline"] if e["kind"] == "acknowledged"]
        # The real key still works afterwards.
        await paging.calls.press(call, "4")
        assert call.said == ["Acknowledged."]
        await tidy(paging, account, incident_id)


async def test_a_bundles_call_repeats_on_1_and_acknowledges_all_its_incidents(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary = await person(paging)
        webhook = await policy_webhook(paging, account, primary, delay=60, dedupBy="alert")
        group = json.loads((AM / "04-firing.json").read_text())  # one group of three firing alerts
        await alert(paging, webhook, group)
        call = await the_call(paging, primary)  # one call for the three incidents
        incidents = await _incidents_of(pool, webhook)
        assert len(incidents) == 3
        first = call.said

        await paging.calls.press(call, "1")
        assert call.said == first and "3 incidents need you" in first[1]
        await paging.calls.press(call, "4")
        assert call.said == ["Acknowledged 3 incidents."] and call.hung_up
        async with pool.acquire() as conn:
            statuses = await conn.fetch("SELECT status FROM incidents WHERE id = ANY($1)", incidents)
        assert [r["status"] for r in statuses] == ["acknowledged"] * 3
        await tidy(paging, account, *incidents)


async def test_with_machine_detection_a_voicemail_hears_nothing_and_escalation_goes_on(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool, machine_detection=True) as paging:
        primary, backup = await person(paging), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        (incident_id,) = await alert(paging, webhook)
        call = await the_call(paging, primary)
        # Twilio fetches what to say once it knows who answered.
        assert call.machine_detection and call.playing is None
        assert call.url is not None and call.url.endswith("?stage=answered")

        answered = await paging.calls.answer(call, answered_by="machine_start")
        assert answered.status == 200 and call.said == [] and call.hung_up

        # Not answered by a person: the backup is called, and a person answers.
        call = await the_call(paging, backup)
        await paging.calls.answer(call, answered_by="human")
        assert call.said == ["Monoduty alert from Production Alerts.", "Severity critical. DB down.", MENU]
        await paging.calls.press(call, "4")
        assert call.said == ["Acknowledged."]
        shown = await incident(paging, account, incident_id)
        assert shown["acknowledged_by"]["user_id"] == str(backup.account.user.id)
        await tidy(paging, account, incident_id)
