"""Delivery receipts: Twilio's status callbacks say what became of a page's SMS or call, the
incident's timeline shows it, an undelivered SMS or a call nobody answered moves escalation on
without waiting out the step, a forged callback is refused, and a receipt never counts twice.

End to end: the real API and a real worker on one clock 120 times as fast as the real one, the
local Twilio stand-in taking the pages (tests/support/providers.py) and posting their status
callbacks, signed as Twilio signs them (tests/support/twilio_receipts.py).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from engine.alerts import lifecycle
from engine.alerts.lifecycle import DeliveryStatus
from engine.alerts.payloads import parse_alert
from engine.alerts.receipts import Report, record
from engine.incidents import actions
from engine.settings import Settings
from tests.support.clock import ScaledClock
from tests.support.escalation import add_rule, new_policy, step, verify_phones, worker_running
from tests.support.factories import ALERT, WEBHOOK, Account, create, make_client, new_account, path_of
from tests.support.processes import wait_until
from tests.support.providers import TWILIO_TOKEN, FakeProviders, Reply, Request
from tests.support.teams import add_member, new_team
from tests.support.twilio_calls import PhoneCalls
from tests.support.twilio_receipts import StatusCallbacks

RATE = 120  # clock minutes per real half-second
STEP_MINUTES = 60  # half a real minute: only a receipt moves the incident on within a test's wait


@dataclass
class Paging:
    client: TestClient
    clock: ScaledClock
    fake: FakeProviders
    receipts: StatusCallbacks
    calls: PhoneCalls
    pool: asyncpg.Pool


@dataclass(frozen=True)
class Person:
    account: Account
    phone: str
    topic: str  # pushed at once whenever they are paged: shows when a step reached them


@contextlib.asynccontextmanager
async def running(
    provider_settings: Settings, fake: FakeProviders, pool: asyncpg.Pool
) -> AsyncIterator[Paging]:
    """The API and a worker on one fast clock, sweeping every second."""
    clock = ScaledClock(RATE)
    settings = provider_settings.with_(escalation_sweep_seconds=1)
    client = await make_client(settings, clock=clock)
    try:
        async with worker_running(settings, clock):
            yield Paging(client, clock, fake, StatusCallbacks(client), PhoneCalls(fake, client), pool)
    finally:
        await client.close()


async def person(paging: Paging, then: str | None = None) -> Person:
    """Someone pushed (and emailed) at once when paged and, with ``then`` (SMS or CALL), reached
    that way a minute later: their last chance."""
    phone = f"+1628{uuid.uuid4().int % 10**7:07d}"
    account = await new_account(paging.pool, phone=None)
    topic = f"topic-{uuid.uuid4().hex[:8]}"
    await add_rule(paging.client, account, "PUSH_NOTIF", topic, 0)
    if then is not None:
        await add_rule(paging.client, account, then, phone, 1)
        await verify_phones(paging.pool, account)
    return Person(account, phone, topic)


async def policy_webhook(paging: Paging, owner: Account, *people: Person) -> dict[str, Any]:
    """A webhook whose policy pages ``people`` one step each, an hour apart."""
    team = await new_team(paging.client, owner)
    for someone in people:
        await add_member(paging.client, owner, team["id"], someone.account, "responder")
    steps = [step(STEP_MINUTES, someone.account) for someone in people]
    policy = await new_policy(paging.client, owner, *steps, team_id=team["id"])
    body = {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    return await create(paging.client, owner, body)


async def opened(paging: Paging, webhook: dict[str, Any]) -> uuid.UUID:
    resp = await paging.client.post(path_of(webhook), json=ALERT)
    assert resp.status == 202, await resp.text()

    async def incident_id() -> uuid.UUID | None:
        async with paging.pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT id FROM incidents WHERE webhook_id = $1", uuid.UUID(webhook["id"])
            )
        return found if isinstance(found, uuid.UUID) else None

    found: uuid.UUID = await wait_until(incident_id, "the incident")
    return found


def sent_to(paging: Paging, kind: str, number: str) -> list[Request]:
    return [r for r in paging.fake.requests if r.kind == kind and r.target == number and r.sid is not None]


async def the_page(paging: Paging, kind: str, someone: Person) -> Request:
    """The one SMS or call to ``someone``, once the worker has recorded its sid."""
    (request,) = await wait_until(
        lambda: sent_to(paging, kind, someone.phone), f"the {kind} to {someone.phone}"
    )
    assert request.sid is not None

    async def recorded() -> bool:
        async with paging.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1 FROM deliveries WHERE provider_id = $1", request.sid))

    await wait_until(recorded, "the delivery's sid")
    return request


def pushed(paging: Paging, someone: Person) -> int:
    return sum(1 for r in paging.fake.requests if r.target == someone.topic)


async def incident(paging: Paging, owner: Account, incident_id: uuid.UUID) -> dict[str, Any]:
    resp = await paging.client.get(f"/api/incidents/{incident_id}", headers=owner.headers)
    assert resp.status == 200, await resp.text()
    found: dict[str, Any] = (await resp.json())["incident"]
    return found


def delivery_of(shown: dict[str, Any], channel: str, target: str) -> dict[str, Any]:
    (entry,) = [
        e["delivery"]
        for e in shown["timeline"]
        if e["delivery"] and (e["delivery"]["channel"], e["delivery"]["target"]) == (channel, target)
    ]
    found: dict[str, Any] = entry
    return found


async def tidy(paging: Paging, owner: Account, *incidents: uuid.UUID) -> None:
    """Leave nothing escalating for the next tests' workers (the database is the session's)."""
    async with paging.pool.acquire() as conn:
        for incident_id in incidents:
            if await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) != "resolved":
                await actions.resolve(conn, owner.user.id, incident_id, paging.clock.now())


async def test_an_undelivered_sms_moves_escalation_on_within_one_sweep(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="SMS"), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        text = await the_page(paging, "sms", primary)
        assert text.form["StatusCallback"].startswith("http://monoduty.test/twilio/status/")

        # On its way, then lost by the carrier (30003: unreachable handset).
        assert await paging.receipts.message(text, "sent") == (200, {"success": True, "recorded": True})
        assert pushed(paging, backup) == 0
        status, answer = await paging.receipts.message(text, "undelivered", error_code="30003")
        assert (status, answer["recorded"]) == (200, True)
        # The step's hour is not waited out: the next sweep pages the backup.
        await wait_until(lambda: pushed(paging, backup) == 1, "the backup paged", timeout=3)

        shown = await incident(paging, account, incident_id)
        assert shown["escalation_step"] == 1
        receipt = delivery_of(shown, "SMS", primary.phone)["receipt"]
        assert (receipt["status"], receipt["provider_status"], receipt["error_code"]) == (
            "undelivered",
            "undelivered",
            "30003",
        )
        assert receipt["answered"] is None and receipt["reached_at"] is None
        (why,) = [e["text"] for e in shown["timeline"] if e["kind"] == "unreached"]
        assert why == (
            f"step 1: SMS to {primary.phone}: undelivered (error 30003); "
            "nobody it paged can be reached, escalating now"
        )
        # The push that went with it shows as taken by ntfy, which confirms nothing more.
        assert delivery_of(shown, "PUSH_NOTIF", primary.topic)["receipt"]["status"] == "accepted"

        # Twilio sending it again (or anyone replaying it) changes nothing more.
        assert (await paging.receipts.replay())[1]["recorded"] is False
        assert (await paging.receipts.message(text, "failed", error_code="30008"))[1]["recorded"] is False
        again = await incident(paging, account, incident_id)
        assert (
            again["escalation_step"] == 1 and [e["kind"] for e in again["timeline"]].count("unreached") == 1
        )
        assert pushed(paging, backup) == 1
        await tidy(paging, account, incident_id)


async def test_an_sms_the_provider_refuses_for_good_moves_escalation_on_within_one_sweep(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    """No receipt ever comes for a send Twilio refused (21211: not a valid number): the refusal is
    the handover's answer, and moves the step on as an undelivered receipt does."""
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="SMS"), await person(paging)
        refused = {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}
        fake_providers.script(primary.phone, Reply(status=400, json=refused))
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        await wait_until(lambda: pushed(paging, backup) == 1, "the backup paged", timeout=3)

        shown = await incident(paging, account, incident_id)
        assert shown["escalation_step"] == 1
        sms = delivery_of(shown, "SMS", primary.phone)
        assert (sms["status"], sms["attempts"]) == ("failed", 1)  # permanent: not retried
        (why,) = [e["text"] for e in shown["timeline"] if e["kind"] == "unreached"]
        assert why.startswith(f"step 1: SMS to {primary.phone}: failed (")
        assert why.endswith("nobody it paged can be reached, escalating now")
        assert TWILIO_TOKEN not in why
        # Exactly one SMS went to the provider, and the backup was paged once.
        assert len([r for r in fake_providers.requests if r.target == primary.phone]) == 1
        assert pushed(paging, backup) == 1
        await tidy(paging, account, incident_id)


@pytest.mark.parametrize(
    ("ended", "answered_by", "said"),
    [("no-answer", None, "no-answer"), ("completed", "machine_end_beep", "completed by machine_end_beep")],
)
async def test_a_call_nobody_answers_moves_escalation_on(
    provider_settings: Settings,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
    account: Account,
    ended: str,
    answered_by: str | None,
    said: str,
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="CALL"), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        call = await the_page(paging, "call", primary)
        (placed,) = paging.calls.to(primary.phone)
        assert placed.sid == call.sid  # the phone rings with the call Twilio answered the create with

        status, answer = await paging.receipts.call(call, ended, duration=0, answered_by=answered_by)
        assert (status, answer["recorded"]) == (200, True)
        await wait_until(lambda: pushed(paging, backup) == 1, "the backup paged", timeout=3)
        shown = await incident(paging, account, incident_id)
        receipt = delivery_of(shown, "CALL", primary.phone)["receipt"]
        assert (receipt["status"], receipt["provider_status"], receipt["answered"]) == (
            "undelivered",
            ended,
            False,
        )
        assert receipt["answered_by"] == answered_by
        (why,) = [e["text"] for e in shown["timeline"] if e["kind"] == "unreached"]
        assert why.startswith(f"step 1: CALL to {primary.phone}: {said};")
        await tidy(paging, account, incident_id)


async def test_a_missed_call_waits_out_the_step_when_a_push_went_with_it(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    """The call is not the person's last chance when a push went out with it: ntfy confirms
    nothing, so the push may have woken them, and the step waits for an acknowledgement."""
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="CALL"), await person(paging)
        await add_rule(paging.client, primary.account, "PUSH_NOTIF", f"{primary.topic}-too", 1)
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        call = await the_page(paging, "call", primary)
        await wait_until(
            lambda: any(r.target == f"{primary.topic}-too" for r in fake_providers.requests), "the push"
        )
        assert (await paging.receipts.call(call, "no-answer"))[1]["recorded"] is True
        shown = await incident(paging, account, incident_id)
        assert shown["escalation_step"] == 0 and not [
            e for e in shown["timeline"] if e["kind"] == "unreached"
        ]
        await tidy(paging, account, incident_id)


async def test_delivered_and_answered_show_in_the_timeline_and_the_step_waits(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="SMS"), await person(paging)
        await add_rule(paging.client, primary.account, "CALL", primary.phone, 1)
        await verify_phones(pool, primary.account)
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        text, call = await the_page(paging, "sms", primary), await the_page(paging, "call", primary)
        before = (await incident(paging, account, incident_id))["next_escalation_at"]

        assert (await paging.receipts.message(text, "delivered"))[1]["recorded"] is True
        # A late "sent" (Twilio does not promise their order) does not take it back.
        assert (await paging.receipts.message(text, "sent"))[1]["recorded"] is False
        assert (await paging.receipts.call(call, "completed", duration=42, answered_by="human"))[1][
            "recorded"
        ]

        shown = await incident(paging, account, incident_id)
        sms, voice = delivery_of(shown, "SMS", primary.phone), delivery_of(shown, "CALL", primary.phone)
        assert (sms["status"], sms["provider_id"], sms["receipt"]["status"]) == (
            "delivered",
            text.sid,
            "delivered",
        )
        assert sms["receipt"]["reached_at"] is not None and sms["receipt"]["answered"] is None
        assert voice["receipt"] | {"at": None, "reached_at": None} == {
            "status": "delivered",
            "provider_status": "completed",
            "error_code": None,
            "at": None,
            "reached_at": None,
            "answered": True,
            "call_seconds": 42,
            "answered_by": "human",
        }
        # Answered 42 s before the call ended.
        ended, reached = (datetime.fromisoformat(voice["receipt"][k]) for k in ("at", "reached_at"))
        assert round((ended - reached).total_seconds()) == 42
        # Email and push end at "accepted", with what their provider answered.
        mail = delivery_of(shown, "EMAIL", primary.account.user.email)
        assert mail["receipt"]["status"] == "accepted"
        assert mail["receipt"]["provider_status"].startswith("250 2.0.0 Ok: queued as ")
        push = delivery_of(shown, "PUSH_NOTIF", primary.topic)
        (published,) = [r for r in fake_providers.requests if r.target == primary.topic]
        assert (push["provider_id"], push["receipt"]["status"]) == (published.sid, "accepted")
        # Reached: the step waits for an acknowledgement as before.
        assert shown["next_escalation_at"] == before and shown["escalation_step"] == 0
        assert not [e for e in shown["timeline"] if e["kind"] == "unreached"] and pushed(paging, backup) == 0
        await tidy(paging, account, incident_id)


async def test_an_acknowledged_incident_never_escalates_on_a_receipt(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool, account: Account
) -> None:
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="CALL"), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        call = await the_page(paging, "call", primary)
        resp = await paging.client.post(f"/api/incidents/{incident_id}/acknowledge", headers=account.headers)
        assert resp.status == 200, await resp.text()

        # The call was placed before the acknowledge and rang out: recorded, and that is all.
        assert (await paging.receipts.call(call, "no-answer"))[1]["recorded"] is True
        shown = await incident(paging, account, incident_id)
        assert (shown["status"], shown["next_escalation_at"], shown["escalation_step"]) == (
            "acknowledged",
            None,
            0,
        )
        assert delivery_of(shown, "CALL", primary.phone)["receipt"]["status"] == "undelivered"
        assert not [e for e in shown["timeline"] if e["kind"] == "unreached"] and pushed(paging, backup) == 0
        await tidy(paging, account, incident_id)


async def test_a_forged_callback_is_refused_and_changes_nothing(
    provider_settings: Settings,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
    account: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(provider_settings, fake_providers, pool) as paging:
        primary, backup = await person(paging, then="SMS"), await person(paging)
        webhook = await policy_webhook(paging, account, primary, backup)
        incident_id = await opened(paging, webhook)
        text = await the_page(paging, "sms", primary)

        for signed_with in ("not-the-auth-token", ""):
            status, answer = await paging.receipts.message(text, "undelivered", signed_with=signed_with)
            assert (status, answer["success"], answer["code"]) == (403, False, "TWILIO_SIGNATURE_INVALID")
            assert TWILIO_TOKEN not in str(answer)
        # Signed, but for another message than the one this delivery sent: not its receipt.
        other = Request("sms", text.target, text.form, {}, "", "SM" + uuid.uuid4().hex)
        assert await paging.receipts.message(other, "undelivered") == (
            200,
            {"success": True, "recorded": False},
        )
        # Signed, for no delivery of ours.
        nowhere = Request(
            "sms",
            text.target,
            {**text.form, "StatusCallback": f"http://monoduty.test/twilio/status/{uuid.uuid4()}"},
            {},
            "",
            text.sid,
        )
        status, answer = await paging.receipts.message(nowhere, "undelivered")
        assert (status, answer["code"]) == (404, "DELIVERY_NOT_FOUND")

        shown = await incident(paging, account, incident_id)
        assert delivery_of(shown, "SMS", primary.phone)["receipt"]["status"] == "accepted"
        assert shown["escalation_step"] == 0 and pushed(paging, backup) == 0
        await tidy(paging, account, incident_id)
    # Neither the auth token nor the number paged reaches a log line.
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert TWILIO_TOKEN not in logged and primary.phone not in logged


async def test_receipts_never_count_twice_in_the_statistics_or_the_reports(
    live: TestClient, provider_settings: Settings, fake_providers: FakeProviders, account: Account
) -> None:
    """A webhook's own SMS and call targets: successful_calls counts the handover, once, whatever
    Twilio says later, however often; the performance report counts each receipt once."""
    sms, voice = f"+1628{uuid.uuid4().int % 10**7:07d}", f"+1628{uuid.uuid4().int % 10**7:07d}"
    body = {
        "name": "Receipts",
        "notificationTypes": ["SMS", "CALL"],
        "targetChannels": {"sms": sms, "call": voice},
    }
    webhook = await create(live, account, body)
    receipts = StatusCallbacks(live)
    async with worker_running(provider_settings):
        assert (await live.post(path_of(webhook), json=ALERT)).status == 202

        async def statistics() -> dict[str, Any]:
            resp = await live.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
            found: dict[str, Any] = (await resp.json())["webhook"]["statistics"]
            return found

        async def counted_once() -> bool:
            return bool((await statistics())["successful_calls"] == 1)

        await wait_until(counted_once, "the call counted")
        text = next(r for r in fake_providers.requests if r.target == sms)
        call = next(r for r in fake_providers.requests if r.target == voice)
        counted = await statistics()
        for _ in range(2):  # each one twice, and out of order
            await receipts.message(text, "delivered")
            await receipts.message(text, "sent")
            await receipts.call(call, "no-answer")
            await receipts.call(call, "completed", duration=30)
        assert await statistics() == counted
        assert (counted["total_calls"], counted["successful_calls"], counted["failed_calls"]) == (1, 1, 0)

    today = datetime.now(UTC).date().isoformat()
    resp = await live.post(
        "/api/reports/generate",
        json={"type": "performance", "dateRange": f"{today} to {today}"},
        headers=account.headers,
    )
    channels = {c["channel"]: c for c in (await resp.json())["report"]["channels"]}
    assert channels["SMS"]["receipts_delivered"] >= 1
    # This account's only webhook: exactly its two deliveries' receipts, each counted once.
    assert (channels["SMS"]["receipts_delivered"], channels["SMS"]["receipts_undelivered"]) == (1, 0)
    assert (channels["CALL"]["receipts_delivered"], channels["CALL"]["receipts_undelivered"]) == (0, 1)
    assert (channels["SMS"]["delivered_rate"], channels["CALL"]["answer_rate"]) == (100.0, 0.0)


async def test_a_receipt_before_the_worker_records_the_send_is_kept(
    live: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    """Twilio may call back before the worker has written the sid it was answered: the receipt is
    kept, and the worker's record of the handover does not take it back."""
    body = {"name": "Early", "notificationTypes": ["SMS"], "targetChannels": {"sms": "+14155550123"}}
    webhook = await create(live, account, body)
    parsed = parse_alert(b'{"title": "early"}', "application/json")
    now, sid = datetime.now(UTC), "SM" + uuid.uuid4().hex
    async with pool.acquire() as conn:
        delivery_ids = await lifecycle.record_alert(
            conn, uuid.uuid4(), uuid.UUID(webhook["id"]), parsed, received_at=now, now=now
        )
        assert delivery_ids is not None
        (delivery_id,) = delivery_ids
        assert (await record(conn, delivery_id, Report("SMS", sid, "delivered"), now)).changed
        await lifecycle.finish_delivery(conn, delivery_id, DeliveryStatus.DELIVERED, provider_id=sid)
        row = await conn.fetchrow(
            "SELECT status, provider_id, receipt_status FROM deliveries WHERE id = $1", delivery_id
        )
        assert dict(row) == {"status": "delivered", "provider_id": sid, "receipt_status": "delivered"}
        # A call's words are no receipt of an SMS.
        assert not (await record(conn, delivery_id, Report("CALL", sid, "no-answer"), now)).changed


async def test_the_reports_count_the_pages_escalation_sent_and_what_became_of_them(
    provider_settings: Settings, fake_providers: FakeProviders, pool: asyncpg.Pool
) -> None:
    """One step pages three people (each pushed at once, then one texted and two called a minute
    later); Twilio reports the text delivered, one call answered and one not. The detailed and
    performance reports count those pages: per channel deliveries, the delivered rate, the median
    time to delivered and the answer rate of calls, and detailed lists each page. (The call that
    opened the incident has no delivery of its own: before pages counted, these reports said
    nothing of what was sent.)"""
    owner = await new_account(pool, phone=None)  # a team of its own: the report holds only this
    async with running(provider_settings, fake_providers, pool) as paging:
        texted = await person(paging, then="SMS")
        answers, ignores = await person(paging, then="CALL"), await person(paging, then="CALL")
        team = await new_team(paging.client, owner)
        for someone in (texted, answers, ignores):
            await add_member(paging.client, owner, team["id"], someone.account, "responder")
        policy = await new_policy(
            paging.client,
            owner,
            step(STEP_MINUTES, texted.account, answers.account, ignores.account),
            team_id=team["id"],
        )
        only_email = {"notificationTypes": ["EMAIL"], "targetChannels": {"email": "oncall@example.com"}}
        body = {**WEBHOOK, **only_email, "teamId": team["id"], "escalationPolicyId": policy["id"]}
        incident_id = await opened(paging, await create(paging.client, owner, body))
        text = await the_page(paging, "sms", texted)
        answered, missed = await the_page(paging, "call", answers), await the_page(paging, "call", ignores)
        assert (await paging.receipts.message(text, "delivered"))[1]["recorded"] is True
        assert (await paging.receipts.call(answered, "completed", duration=0))[1]["recorded"] is True
        assert (await paging.receipts.call(missed, "no-answer", duration=0))[1]["recorded"] is True

        today = datetime.now(UTC).date().isoformat()

        async def report(kind: str, **extra: str) -> Any:
            resp = await paging.client.post(
                "/api/reports/generate",
                json={"type": kind, "dateRange": f"{today} to {today}", **extra},
                headers=owner.headers,
            )
            assert resp.status == 200, await resp.text()
            if extra.get("format") == "pdf":
                return "".join(page.extract_text() for page in PdfReader(io.BytesIO(await resp.read())).pages)
            return await resp.json() if not extra else await resp.text()

        performance = (await report("performance"))["report"]
        detailed = (await report("detailed"))["report"]
        detailed_csv = list(csv.DictReader(io.StringIO(await report("detailed", format="csv"))))
        detailed_pdf = await report("detailed", format="pdf")
        number = (await incident(paging, owner, incident_id))["number"]
        await tidy(paging, owner, incident_id)

    channels = {c["channel"]: c for c in performance["channels"]}
    assert {k: channels[k]["deliveries"] for k in ("PUSH_NOTIF", "SMS", "CALL")} == {
        "PUSH_NOTIF": 3,
        "SMS": 1,
        "CALL": 2,
    }
    sms, call, push = channels["SMS"], channels["CALL"], channels["PUSH_NOTIF"]
    assert (sms["receipts_delivered"], sms["delivered_rate"]) == (1, 100.0)
    assert sms["time_to_delivered_p50_ms"] is not None and sms["time_to_delivered_p50_ms"] >= 0
    assert (call["receipts_delivered"], call["receipts_undelivered"], call["answer_rate"]) == (1, 1, 50.0)
    assert push["delivered_rate"] is None  # ntfy confirms nothing: no rate rather than 0 %
    assert performance["overall"]["answer_rate"] == 50.0
    # Everyone is emailed at once too; the webhook's own targets get nothing: its policy pages.
    assert channels["EMAIL"]["deliveries"] == 3

    receipts = {c["channel"]: c for c in detailed["receipts"]["channels"]}
    assert (receipts["SMS"]["delivered_rate"], receipts["CALL"]["answer_rate"]) == (100.0, 50.0)
    pages = detailed["pages"]
    assert sorted(p["channel"] for p in pages) == ["CALL"] * 2 + ["EMAIL"] * 3 + ["PUSH_NOTIF"] * 3 + ["SMS"]
    assert {(p["kind"], p["incidents"], p["title"]) for p in pages} == {("page", f"#{number}", "DB down")}
    (sms_page,) = [p for p in pages if p["channel"] == "SMS"]
    assert sms_page["receipt_status"] == "delivered" and texted.phone not in sms_page["target"]  # masked
    # The call itself is listed, with no delivery of its own: what it sent is its incident's pages.
    assert [len(a["deliveries"]) for a in detailed["alerts"]] == [0]
    # The CSV: the call's row, then one row per page, its alert's columns empty.
    call_row, *page_rows = detailed_csv
    assert (call_row["alert_id"] != "", call_row["channel"], call_row["incidents"]) == (
        True,
        "",
        f"#{number}",
    )
    assert len(page_rows) == 9 and {(r["alert_id"], r["kind"], r["incidents"]) for r in page_rows} == {
        ("", "page", f"#{number}")
    }
    assert sorted(r["receipt_status"] for r in page_rows if r["channel"] == "CALL") == [
        "delivered",
        "undelivered",
    ]
    # The PDF has a table of them.
    assert "Pages sent by escalation" in detailed_pdf and "undelivered" in detailed_pdf
