"""Replying to an SMS page: "Reply 3a to ack, 3c to close" acts as the person paged, from their
verified number only, through Twilio's signed incoming-message webhook (POST /twilio/sms); STOP
and START; one help text, at most five a day, for anything else; codes reused only after resolve.

The real API and PostgreSQL, a real worker, and the local Twilio stand-in both ways: it takes the
page (tests/support/providers.py FakeProviders) and posts the reply, signed as Twilio signs it
(TwilioInbound)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue
from engine.channels.base import ReplyCode
from engine.channels.sms import fits_one_segment, render
from engine.incidents import actions, sms_codes
from engine.incidents.channel_actions import Action
from engine.incidents.sms_replies import HELP_TEXT, Reply, ReplyKind, parse
from engine.oncall import escalation, throttles
from engine.settings import Settings
from tests.support.channels import alert
from tests.support.clock import ScaledClock
from tests.support.escalation import (
    clear_rules,
    new_policy,
    open_incident,
    step,
    verify_phones,
    worker_running,
)
from tests.support.factories import (
    ALERT,
    WEBHOOK,
    Account,
    assert_error,
    create,
    new_account,
    path_of,
    run_worker,
)
from tests.support.processes import wait_until
from tests.support.providers import TWILIO_TOKEN, FakeProviders, TwilioInbound, twiml_message
from tests.support.teams import new_team

PUBLIC_URL = "http://monoduty.test"  # provider_settings' MONODUTY_PUBLIC_URL: what Twilio signs
REPLY = re.compile(r"^Reply (\d+)a to ack(?: all (\d+))?, \1c to close")


def unique_phone() -> str:
    """A number no other test's account has (the database is the session's)."""
    return f"+1646{uuid.uuid4().int % 10**7:07d}"


async def on_call(
    client: TestClient, pool: asyncpg.Pool, account: Account, *, call_after: int | None = None
) -> tuple[Account, dict[str, Any]]:
    """A person with a verified number, texted as soon as they are paged (and called
    ``call_after`` minutes later), and a webhook whose policy pages them."""
    person = await new_account(pool, phone=unique_phone())
    await verify_phones(pool, person)
    await texted_at_once(client, person, call_after=call_after)
    team = await new_team(client, account, members={"responder": person})
    policy = await new_policy(client, account, step(30, person), team_id=team["id"])
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    return person, webhook


async def texted_at_once(client: TestClient, person: Account, *, call_after: int | None = None) -> None:
    """``person``'s notification rules: an SMS to their number at once (a call ``call_after`` later)."""
    await clear_rules(client, person)
    listed = await (await client.get("/api/me/contact-methods", headers=person.headers)).json()
    method = {m["type"]: m["id"] for m in listed["contact_methods"]}
    for kind, delay in (("SMS", 0), ("CALL", call_after)):
        if delay is not None:
            body = {"contactMethodId": method[kind], "delayMinutes": delay}
            resp = await client.post("/api/me/notification-rules", json=body, headers=person.headers)
            assert resp.status == 201, await resp.text()


def phone_of(person: Account) -> str:
    assert person.user.phone is not None
    return person.user.phone


def texts_to(fake: FakeProviders, phone: str) -> list[str]:
    return [r.form["Body"] for r in fake.requests if r.kind == "sms" and r.target == phone]


def code_in(text: str) -> tuple[int, int]:
    """(code, incidents it acts on) from a page's reply line."""
    found = REPLY.match(text.splitlines()[-1])
    assert found, text
    return int(found.group(1)), int(found.group(2) or 1)


async def incident(client: TestClient, account: Account, incident_id: uuid.UUID | str) -> dict[str, Any]:
    resp = await client.get(f"/api/incidents/{incident_id}", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["incident"]


async def sweep_and_send(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings, incidents: list[uuid.UUID], now: datetime
) -> None:
    """What the worker does at ``now``: due steps and pages become deliveries, which it sends."""
    async with pool.acquire() as conn:
        await escalation.sweep(conn, now)
        sent = await conn.fetch(
            "SELECT DISTINCT delivery_id FROM pages WHERE incident_id = ANY($1) AND delivery_id IS NOT NULL",
            incidents,
        )
    for row in sent:
        await queue.enqueue_delivery(redis, str(row["delivery_id"]))
    await run_worker(settings)


async def resolve_all(pool: asyncpg.Pool, account: Account, incidents: list[uuid.UUID]) -> None:
    """Leave nothing escalating for later tests' workers."""
    async with pool.acquire() as conn:
        for incident_id in incidents:
            if await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) != "resolved":
                await actions.resolve(conn, account.user.id, incident_id, datetime.now(UTC))


async def test_a_reply_code_acknowledges_as_the_person_paged_and_then_resolves(
    live: TestClient,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    person, webhook = await on_call(live, pool, account, call_after=2)
    phone, twilio = phone_of(person), TwilioInbound(live)
    clock = ScaledClock(120)  # two policy minutes in one real second
    async with worker_running(provider_settings.with_(escalation_sweep_seconds=1), clock):
        resp = await live.post(path_of(webhook), json=ALERT)
        assert resp.status == 202
        await wait_until(lambda: texts_to(fake_providers, phone), "the SMS page", timeout=30)
        (page,) = texts_to(fake_providers, phone)
        shown = await (await live.get("/api/incidents", headers=account.headers)).json()
        (paged,) = [
            i for i in shown["incidents"] if i["title"] == "DB down" and i["webhook_id"] == webhook["id"]
        ]
        number = paged["number"]
        assert page.splitlines()[0] == f"[CRITICAL] #{number} DB down"
        code, count = code_in(page)
        assert count == 1 and fits_one_segment(page)

        status, answer = await twilio.text(phone, f"{code}a")
        acknowledged_at = clock.now()
        assert status == 200, answer
        assert twiml_message(answer) == f"Acknowledged #{number} DB down"
        after = await incident(live, account, paged["id"])
        assert after["status"] == "acknowledged"
        (event,) = [e for e in after["timeline"] if e["kind"] == "acknowledged"]
        assert (event["user_id"], event["text"]) == (str(person.user.id), "via SMS reply")
        # The call due two minutes after the text never comes: acknowledge stopped the paging.
        await wait_until(
            lambda: (clock.now() - acknowledged_at) > timedelta(minutes=4), "four policy minutes", timeout=30
        )
        assert [r.kind for r in fake_providers.requests if r.target == phone] == ["sms"]

        status, answer = await twilio.text(phone, f" {code}C ")
        assert (status, twiml_message(answer)) == (200, f"Resolved #{number} DB down")
        assert (await incident(live, account, paged["id"]))["status"] == "resolved"
        # Again: nothing more to do, and it says so.
        status, answer = await twilio.text(phone, f"close {code}")
        assert twiml_message(answer) == f"Already resolved: #{number} DB down"


async def test_a_bundled_sms_has_one_code_for_all_its_incidents(
    live: TestClient,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    person, webhook = await on_call(live, pool, account)
    phone, now = phone_of(person), datetime.now(UTC)
    incidents = [await open_incident(pool, webhook, now, key=key) for key in ("db", "disk", "api")]
    await sweep_and_send(pool, redis, provider_settings, incidents, now)

    (bundle,) = texts_to(fake_providers, phone)
    assert bundle.startswith("[ERROR] 3 incidents need you: #")
    code, count = code_in(bundle)
    assert count == 3
    # Its list of incidents fills the segment: no room to offer escalating as well.
    assert bundle.splitlines()[-1] == f"Reply {code}a to ack all 3, {code}c to close all 3"
    status, answer = await TwilioInbound(live).text(phone, f"ack {code}")
    assert status == 200
    numbers = sorted([(await incident(live, account, i))["number"] for i in incidents])
    assert twiml_message(answer) == "Acknowledged " + ", ".join(f"#{n}" for n in numbers)
    for incident_id in incidents:
        assert (await incident(live, account, incident_id))["status"] == "acknowledged"
    await resolve_all(pool, account, incidents)


async def test_a_reply_code_with_e_escalates_to_the_next_step_at_once_as_key_5_does(
    live: TestClient,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    person, backup = [await new_account(pool, phone=unique_phone()) for _ in range(2)]
    for someone in (person, backup):
        await verify_phones(pool, someone)
        await texted_at_once(live, someone)
    team = await new_team(live, account, members={"responder": person, "admin": backup})
    # Half an hour a step: only the reply moves the incident on.
    policy = await new_policy(live, account, step(30, person), step(30, backup), team_id=team["id"])
    webhook = await create(
        live, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    now = datetime.now(UTC)
    incident_id = await open_incident(pool, webhook, now)
    await sweep_and_send(pool, redis, provider_settings, [incident_id], now)
    (page,) = texts_to(fake_providers, phone_of(person))
    code, _ = code_in(page)
    # The page says so where there is room: this one has.
    assert page.splitlines()[-1] == f"Reply {code}a to ack, {code}c to close, {code}e to escalate"
    assert fits_one_segment(page)
    assert texts_to(fake_providers, phone_of(backup)) == []

    status, answer = await TwilioInbound(live).text(phone_of(person), f"{code}E")
    assert status == 200
    shown = await incident(live, account, incident_id)
    assert twiml_message(answer) == f"Escalated #{shown['number']} db down, next step paged"
    assert shown["status"] == "triggered" and shown["escalation_step"] == 1
    escalated = [e for e in shown["timeline"] if e["kind"] == "escalated"]
    assert [(e["actor"], e["user_id"]) for e in escalated] == [
        ("system", None),
        ("user", str(person.user.id)),
    ]
    assert escalated[1]["text"] == f"step 2 of 2: paged {backup.user.email} (via SMS reply)"
    # The backup's page is due now, not in half an hour: the next sweep sends it.
    await sweep_and_send(pool, redis, provider_settings, [incident_id], datetime.now(UTC))
    (backup_page,) = texts_to(fake_providers, phone_of(backup))
    assert backup_page.splitlines()[0].endswith(f"#{shown['number']} db down")
    await resolve_all(pool, account, [incident_id])


async def test_codes_are_short_per_number_and_reused_only_once_their_incidents_are_resolved(
    live: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    person, webhook = await on_call(live, pool, account)
    phone, t0 = phone_of(person), datetime.now(UTC)

    async def page(key: str, at: datetime) -> tuple[uuid.UUID, ReplyCode | None]:
        """Open an incident and page it: its SMS's reply code."""
        incident_id = await open_incident(pool, webhook, at, key=key)
        async with pool.acquire() as conn:
            await escalation.sweep(conn, at, throttles=throttles.NONE)
            delivery_id = await conn.fetchval(
                "SELECT delivery_id FROM pages WHERE incident_id = $1 AND channel = 'SMS'", incident_id
            )
            code = await sms_codes.assign(conn, delivery_id, phone, at, public_url=PUBLIC_URL)
        return incident_id, code

    db, first = await page("db", t0)
    disk, second = await page("disk", t0 + timedelta(seconds=1))
    assert (first, second) == (ReplyCode(1), ReplyCode(2))  # another number's codes are its own
    async with pool.acquire() as conn:
        await actions.acknowledge(conn, person.user.id, db, t0)  # acknowledged is still open: held
    api, third = await page("api", t0 + timedelta(seconds=2))
    assert third == ReplyCode(3)
    async with pool.acquire() as conn:
        await actions.resolve(conn, person.user.id, db, t0)
    cpu, fourth = await page("cpu", t0 + timedelta(seconds=3))
    assert fourth == ReplyCode(1)  # db is resolved: its code is free again
    _, answer = await TwilioInbound(live).text(phone, "1a")
    assert twiml_message(answer) == f"Acknowledged #{(await incident(live, account, cpu))['number']} cpu down"

    # A webhook's own SMS targets are nobody's phone: no code, and without a public URL none at all.
    async with pool.acquire() as conn:
        plain = await conn.fetchval(
            "SELECT id FROM deliveries WHERE incident_id = $1 AND kind = 'page'", disk
        )
        fixed = await conn.fetchval(
            "INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind)"
            " VALUES ($1, NULL, 'SMS', '+14155550123', $2, 'page') RETURNING id",
            uuid.uuid4(),
            disk,
        )
        assert await sms_codes.assign(conn, fixed, "+14155550123", t0, public_url=PUBLIC_URL) is None
        assert await sms_codes.assign(conn, plain, phone, t0, public_url=None) is None
        # A retried send says the code it said first.
        assert await sms_codes.assign(conn, plain, phone, t0, public_url=PUBLIC_URL) is not None
    await resolve_all(pool, account, [db, disk, api, cpu])


async def test_unknown_numbers_and_unreadable_replies_get_a_help_text_five_times_a_day_and_change_nothing(
    live: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    person, webhook = await on_call(live, pool, account)
    now = datetime.now(UTC)
    incident_id = await open_incident(pool, webhook, now)
    async with pool.acquire() as conn:
        await escalation.sweep(conn, now)
        delivery_id = await conn.fetchval("SELECT delivery_id FROM pages WHERE incident_id = $1", incident_id)
        assert await sms_codes.assign(
            conn, delivery_id, phone_of(person), now, public_url=PUBLIC_URL
        ) == ReplyCode(1)
    twilio, stranger = TwilioInbound(live), unique_phone()

    answers = [await twilio.text(stranger, body) for body in ("1a", "1c", "HELP", "ack", "what is this")]
    assert all(status == 200 for status, _ in answers)
    assert [twiml_message(body) for _, body in answers] == [HELP_TEXT] * 5
    status, sixth = await twilio.text(stranger, "1a")
    assert (status, twiml_message(sixth)) == (200, None)  # an empty <Response/>: nothing is sent
    assert (await incident(live, account, incident_id))["status"] == "triggered"

    # The person's own number: a code they do not hold, or words we cannot read, get help too.
    status, answer = await twilio.text(phone_of(person), "7a")
    assert twiml_message(answer) == f"No open page of yours has the code 7. {HELP_TEXT}"
    status, answer = await twilio.text(phone_of(person), "please acknowledge")
    assert twiml_message(answer) == HELP_TEXT
    assert (await incident(live, account, incident_id))["status"] == "triggered"
    await resolve_all(pool, account, [incident_id])


async def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(
    live: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    person, webhook = await on_call(live, pool, account)
    phone, now = phone_of(person), datetime.now(UTC)
    incident_id = await open_incident(pool, webhook, now)
    async with pool.acquire() as conn:
        await escalation.sweep(conn, now)
        delivery_id = await conn.fetchval("SELECT delivery_id FROM pages WHERE incident_id = $1", incident_id)
        await sms_codes.assign(conn, delivery_id, phone, now, public_url=PUBLIC_URL)

    forgeries = [
        TwilioInbound(live, auth_token="not-our-auth-token").text(phone, "1a"),  # another account
        TwilioInbound(live, public_url="https://elsewhere.test").text(phone, "1a"),  # signed for elsewhere
        TwilioInbound(live).text(phone, "1a", signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        TwilioInbound(live).text(phone, "1a", signature=""),  # none at all
        TwilioInbound(live).text(phone, "STOP", signature=""),
    ]
    for forged in forgeries:
        status, body = await forged
        assert status == 403
        assert_error(json.loads(body), "TWILIO_SIGNATURE_INVALID")
    assert (await incident(live, account, incident_id))["status"] == "triggered"
    listed = await (await live.get("/api/me/contact-methods", headers=person.headers)).json()
    assert all(m["opted_out_at"] is None for m in listed["contact_methods"])
    await resolve_all(pool, account, [incident_id])


async def test_stop_skips_the_number_when_next_paged_and_start_pages_it_again(
    live: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    person, webhook = await on_call(live, pool, account, call_after=5)
    phone, twilio, now = phone_of(person), TwilioInbound(live), datetime.now(UTC)
    listed = await (await live.get("/api/me/contact-methods", headers=person.headers)).json()
    (sms_method,) = [m["id"] for m in listed["contact_methods"] if m["type"] == "SMS"]
    again = {"contactMethodId": sms_method, "delayMinutes": 10}  # a second text ten minutes on
    assert (await live.post("/api/me/notification-rules", json=again, headers=person.headers)).status == 201
    waiting = await open_incident(pool, webhook, now, key="waiting")
    async with pool.acquire() as conn:
        await escalation.sweep(conn, now)

    status, answer = await twilio.text(phone, "Stop")
    assert (status, twiml_message(answer)) == (200, None)  # Twilio confirms a STOP itself
    listed = await (await live.get("/api/me/contact-methods", headers=person.headers)).json()
    opted = {m["type"]: m["opted_out_at"] for m in listed["contact_methods"] if m["target"] == phone}
    assert opted["SMS"] is not None and opted["CALL"] is None  # STOP is about texts; calls go on

    db = await open_incident(pool, webhook, now, key="db")
    async with pool.acquire() as conn:
        await escalation.sweep(conn, now)
        pages = await conn.fetch(
            "SELECT incident_id, channel, rule_delay, status, reason FROM pages WHERE incident_id = ANY($1)",
            [waiting, db],
        )
    by = {(p["incident_id"], p["channel"], p["rule_delay"]): (p["status"], p["reason"]) for p in pages}
    assert by[(db, "SMS", 0)][0] == by[(db, "SMS", 10)][0] == "skipped"
    assert "replied STOP" in by[(db, "SMS", 0)][1]
    assert by[(db, "CALL", 5)] == ("pending", None)
    # Planned before the STOP: the text not sent yet never is; the call still comes.
    assert by[(waiting, "SMS", 0)] == ("sent", None)
    assert by[(waiting, "SMS", 10)] == ("cancelled", "the number replied STOP")
    assert by[(waiting, "CALL", 5)] == ("pending", None)
    timeline = (await incident(live, account, db))["timeline"]
    assert any(
        e["kind"] == "page_skipped" and f"SMS {phone} skipped: the number replied STOP" in e["text"]
        for e in timeline
    ), timeline

    status, answer = await twilio.text(phone, "START")
    assert twiml_message(answer) == "Monoduty will text this number again. Reply STOP to stop."
    listed = await (await live.get("/api/me/contact-methods", headers=person.headers)).json()
    assert all(m["opted_out_at"] is None for m in listed["contact_methods"])
    api = await open_incident(pool, webhook, now, key="api")
    async with pool.acquire() as conn:
        await escalation.sweep(conn, now, throttles=throttles.NONE)
        sms = await conn.fetchrow(
            "SELECT status, delivery_id FROM pages WHERE incident_id = $1 AND channel = 'SMS'"
            " AND rule_delay = 0",
            api,
        )
    assert sms is not None and sms["status"] == "sent" and sms["delivery_id"] is not None
    await resolve_all(pool, account, [waiting, db, api])


async def test_the_route_logs_its_pattern_and_never_the_token_the_number_or_the_text(
    live: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sender, twilio = unique_phone(), TwilioInbound(live)
    await twilio.text(sender, "secret words 9c")
    await twilio.text(sender, "9a", signature="forged")
    await TwilioInbound(live, auth_token="a-guessed-token-1234").text(sender, "9a")

    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    access = [r.getMessage() for r in caplog.records if r.name == "monoduty.access"]
    assert [line.split()[:3] for line in access] == [
        ["POST", "/twilio/sms", "200"],
        ["POST", "/twilio/sms", "403"],
        ["POST", "/twilio/sms", "403"],
    ]
    for secret in (TWILIO_TOKEN, "a-guessed-token-1234", sender, sender[-7:], "secret words"):
        assert secret not in logged


def test_the_reply_line_ends_the_text_and_is_never_cut() -> None:
    short = render(alert(reply=ReplyCode(4)))
    assert short.splitlines()[-1] == "Reply 4a to ack, 4c to close, 4e to escalate"  # room for it
    assert short.splitlines()[1] == "Replication lag 95s on db-2."  # the detail still fits beside it
    long = render(alert(body="x" * 5000, reply=ReplyCode(12, 3)))
    assert long.splitlines()[-1] == "Reply 12a to ack all 3, 12c to close all 3"  # no room to escalate
    assert fits_one_segment(long)
    assert render(alert(title="t" * 1700, reply=ReplyCode(1))).endswith("\nReply 1a to ack, 1c to close")


@pytest.mark.parametrize(
    ("text", "action", "code"),
    [
        ("3e", Action.ESCALATE, 3),
        (" Esc 3 ", Action.ESCALATE, 3),
        ("escalate #12", Action.ESCALATE, 12),
        ("3 escalate", Action.ESCALATE, 3),
        ("e", Action.ESCALATE, None),
        ("42a", Action.ACKNOWLEDGE, 42),
        ("close 7", Action.RESOLVE, 7),
    ],
)
def test_what_a_reply_asks(text: str, action: Action, code: int | None) -> None:
    assert parse(text) == Reply(ReplyKind.ACT, action, code)


def test_end_is_an_opt_out_word_not_escalate() -> None:
    assert parse("END").kind is ReplyKind.OPT_OUT and parse("3x").kind is ReplyKind.UNREADABLE
