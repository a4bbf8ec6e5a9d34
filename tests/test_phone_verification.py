"""Phone verification (issue 11): a number is paged only once its owner typed the 6-digit code sent
to it. The codes travel through the real SMS and CALL channels to the local Twilio-compatible
provider and are read there; the clock is injected for expiry, throttling and the lock."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.channels.registry import build_channels
from engine.errors import MonodutyError
from engine.oncall import contacts, verification
from engine.oncall.notification_rules import SKIP_UNVERIFIED, notification_plan
from engine.settings import Settings
from tests.support.factories import Account, assert_error, new_account
from tests.support.providers import FakeProviders, Reply

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _sms_code(fake: FakeProviders, number: str) -> str:
    """The code in the last SMS the provider took for ``number``."""
    sms = [r for r in fake.requests if r.kind == "sms" and r.target == number]
    assert sms, f"no SMS to {number}"
    match = re.search(r"\b([0-9]{6})\b", sms[-1].form["Body"])
    assert match, sms[-1].form["Body"]
    return match.group(1)


async def _method(pool: asyncpg.Pool, account: Account, kind: str) -> contacts.ContactMethod:
    async with pool.acquire() as conn:
        return next(m for m in await contacts.list_methods(conn, account.user.id) if m.type == kind)


async def test_a_code_sent_by_sms_verifies_the_number_and_it_is_paged_from_then_on(
    live: TestClient, fake_providers: FakeProviders, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    account = await new_account(pool, phone="+14155550142")
    sms = await _method(pool, account, "SMS")
    async with pool.acquire() as conn:
        before = await notification_plan(conn, account.user.id)
    assert [(p.type, p.skipped_reason) for p in before if p.type in ("SMS", "CALL")] == [
        ("SMS", SKIP_UNVERIFIED),
        ("CALL", SKIP_UNVERIFIED),
    ]

    caplog.set_level(logging.DEBUG)
    resp = await live.post(f"/api/me/contact-methods/{sms.id}/send-code", headers=account.headers)
    assert resp.status == 200, await resp.text()
    sent = (await resp.json())["verification"]
    assert sent["tries_left"] == 5
    expires = datetime.fromisoformat(sent["expires_at"]) - datetime.fromisoformat(sent["sent_at"])
    assert expires == timedelta(minutes=10)
    code = _sms_code(fake_providers, "+14155550142")
    body = fake_providers.requests[-1].form["Body"]
    assert "expires in 10 minutes" in body and len(body) <= 160

    resp = await live.post(
        f"/api/me/contact-methods/{sms.id}/verify",
        json={"code": f"{code[:3]} {code[3:]}"},
        headers=account.headers,
    )
    assert resp.status == 200, await resp.text()
    method = (await resp.json())["contact_method"]
    assert method["verified"] is True and method["verified_at"] is not None

    async with pool.acquire() as conn:
        after = await notification_plan(conn, account.user.id)
        stored = await conn.fetch(
            "SELECT * FROM contact_method_verifications WHERE contact_method_id = $1", sms.id
        )
    # The number is proven for the CALL method as well: same phone, same owner.
    assert [(p.type, p.skipped_reason) for p in after] == [("EMAIL", None), ("SMS", None), ("CALL", None)]
    assert stored == []  # nothing of the code is kept once used
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert code not in logged


async def test_the_code_is_stored_only_as_a_hash(
    live: TestClient, fake_providers: FakeProviders, pool: asyncpg.Pool
) -> None:
    account = await new_account(pool, phone="+14155550143")
    sms = await _method(pool, account, "SMS")
    resp = await live.post(f"/api/me/contact-methods/{sms.id}/send-code", headers=account.headers)
    assert resp.status == 200
    code = _sms_code(fake_providers, "+14155550143")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM contact_method_verifications WHERE contact_method_id = $1", sms.id
        )
    assert row is not None
    assert code not in str(dict(row))
    assert row["code_hash"] == hashlib.sha256(row["salt"] + code.encode()).digest()


async def test_a_call_method_hears_its_code_digit_by_digit(
    provider_settings: Settings,
    http_session: aiohttp.ClientSession,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
) -> None:
    account = await new_account(pool, phone="+14155550144")
    call = await _method(pool, account, "CALL")
    channels = build_channels(provider_settings, http_session)
    async with pool.acquire() as conn:
        await verification.send_verification(conn, account.user.id, call.id, channels, now=T0)
    calls = [r for r in fake_providers.requests if r.kind == "call" and r.target == "+14155550144"]
    assert len(calls) == 1 and not [
        r for r in fake_providers.requests if r.target == "+14155550144" and r.kind == "sms"
    ]
    spoken = re.search(r"code is ((?:[0-9] ){5}[0-9])", calls[0].form["Twiml"])
    assert spoken, calls[0].form["Twiml"]
    async with pool.acquire() as conn:
        method = await verification.verify(
            conn, account.user.id, call.id, spoken.group(1).replace(" ", ""), now=T0 + timedelta(minutes=9)
        )
    assert method.verified_at == T0 + timedelta(minutes=9)


async def _send(
    pool: asyncpg.Pool, channels: dict, account: Account, method_id: uuid.UUID, now: datetime
) -> verification.Verification:
    async with pool.acquire() as conn:
        return await verification.send_verification(conn, account.user.id, method_id, channels, now=now)


async def _verify(
    pool: asyncpg.Pool, account: Account, method_id: uuid.UUID, code: str, now: datetime
) -> str:
    """ "ok", or the error code of the refusal."""
    async with pool.acquire() as conn:
        try:
            await verification.verify(conn, account.user.id, method_id, code, now=now)
        except MonodutyError as exc:
            return exc.code
    return "ok"


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_five_wrong_codes_lock_verification_for_ten_minutes(
    provider_settings: Settings,
    http_session: aiohttp.ClientSession,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
) -> None:
    account = await new_account(pool, phone="+14155550145")
    sms = await _method(pool, account, "SMS")
    channels = build_channels(provider_settings, http_session)
    await _send(pool, channels, account, sms.id, T0)
    code = _sms_code(fake_providers, "+14155550145")

    outcomes = [
        await _verify(pool, account, sms.id, _wrong(code), T0 + timedelta(seconds=i)) for i in range(5)
    ]
    assert outcomes == ["WRONG_CODE"] * 4 + ["VERIFICATION_LOCKED"]
    locked_at = T0 + timedelta(seconds=4)
    # Locked: even the right code is refused, and no new code is sent, until ten minutes have passed.
    assert await _verify(pool, account, sms.id, code, locked_at + timedelta(minutes=9, seconds=59)) == (
        "VERIFICATION_LOCKED"
    )
    with pytest.raises(verification.Throttled) as refused:
        await _send(pool, channels, account, sms.id, locked_at + timedelta(minutes=5))
    assert refused.value.code == "VERIFICATION_LOCKED" and refused.value.headers == {"Retry-After": "300"}
    assert len([r for r in fake_providers.requests if r.target == "+14155550145"]) == 1
    # After the lock the old code is gone: a new one must be asked for, and it works.
    after = locked_at + timedelta(minutes=10)
    assert await _verify(pool, account, sms.id, code, after) == "NO_CODE_SENT"
    sent = await _send(pool, channels, account, sms.id, after)
    assert sent.tries_left == 5
    assert await _verify(pool, account, sms.id, _sms_code(fake_providers, "+14155550145"), after) == "ok"


async def test_tries_are_not_given_back_by_a_new_code(
    provider_settings: Settings,
    http_session: aiohttp.ClientSession,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
) -> None:
    """Else asking for a new code before the 5th wrong one would give unlimited guesses."""
    account = await new_account(pool, phone="+14155550146")
    sms = await _method(pool, account, "SMS")
    channels = build_channels(provider_settings, http_session)
    await _send(pool, channels, account, sms.id, T0)
    code = _sms_code(fake_providers, "+14155550146")
    for _ in range(3):
        assert await _verify(pool, account, sms.id, _wrong(code), T0) == "WRONG_CODE"
    sent = await _send(pool, channels, account, sms.id, T0 + timedelta(minutes=1))
    assert sent.tries_left == 2
    code = _sms_code(fake_providers, "+14155550146")
    assert await _verify(pool, account, sms.id, _wrong(code), T0 + timedelta(minutes=1)) == "WRONG_CODE"
    assert (
        await _verify(pool, account, sms.id, _wrong(code), T0 + timedelta(minutes=1)) == "VERIFICATION_LOCKED"
    )


async def test_an_expired_code_is_refused(
    provider_settings: Settings,
    http_session: aiohttp.ClientSession,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
) -> None:
    account = await new_account(pool, phone="+14155550147")
    sms = await _method(pool, account, "SMS")
    channels = build_channels(provider_settings, http_session)
    await _send(pool, channels, account, sms.id, T0)
    code = _sms_code(fake_providers, "+14155550147")
    assert await _verify(pool, account, sms.id, code, T0 + timedelta(minutes=10)) == "CODE_EXPIRED"
    assert await _verify(pool, account, sms.id, code, T0 + timedelta(minutes=10, seconds=1)) == "NO_CODE_SENT"
    async with pool.acquire() as conn:
        plan = await notification_plan(conn, account.user.id)
    assert [p.skipped_reason for p in plan if p.contact_method_id == sms.id] == [SKIP_UNVERIFIED]


async def test_send_code_is_throttled_to_one_a_minute_per_method(
    live: TestClient, fake_providers: FakeProviders, pool: asyncpg.Pool
) -> None:
    account = await new_account(pool, phone="+14155550148")
    sms = await _method(pool, account, "SMS")
    url = f"/api/me/contact-methods/{sms.id}/send-code"
    assert (await live.post(url, headers=account.headers)).status == 200
    resp = await live.post(url, headers=account.headers)
    assert resp.status == 429
    assert_error(await resp.json(), "VERIFICATION_THROTTLED")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert len([r for r in fake_providers.requests if r.target == "+14155550148"]) == 1  # one SMS only


async def test_the_throttle_lifts_after_a_minute(
    provider_settings: Settings,
    http_session: aiohttp.ClientSession,
    fake_providers: FakeProviders,
    pool: asyncpg.Pool,
) -> None:
    account = await new_account(pool, phone="+14155550149")
    sms = await _method(pool, account, "SMS")
    channels = build_channels(provider_settings, http_session)
    await _send(pool, channels, account, sms.id, T0)
    with pytest.raises(verification.Throttled) as refused:
        await _send(pool, channels, account, sms.id, T0 + timedelta(seconds=59))
    assert refused.value.headers == {"Retry-After": "1"}
    await _send(pool, channels, account, sms.id, T0 + timedelta(seconds=60))
    assert len([r for r in fake_providers.requests if r.target == "+14155550149"]) == 2
    code = _sms_code(fake_providers, "+14155550149")  # the newest code is the one that counts
    assert await _verify(pool, account, sms.id, code, T0 + timedelta(seconds=61)) == "ok"


async def test_what_cannot_be_verified_says_why(live: TestClient, pool: asyncpg.Pool) -> None:
    account = await new_account(pool, phone="+14155550150")
    email = await _method(pool, account, "EMAIL")
    resp = await live.post(f"/api/me/contact-methods/{email.id}/send-code", headers=account.headers)
    assert resp.status == 400
    assert_error(await resp.json(), "NOT_VERIFIABLE")
    sms = await _method(pool, account, "SMS")
    resp = await live.post(
        f"/api/me/contact-methods/{sms.id}/verify", json={"code": "123456"}, headers=account.headers
    )
    assert resp.status == 400
    assert_error(await resp.json(), "NO_CODE_SENT")
    for bad in ("12345", "1234567", "abcdef", 123456, None):
        resp = await live.post(
            f"/api/me/contact-methods/{sms.id}/verify", json={"code": bad}, headers=account.headers
        )
        assert resp.status == 400
        data = await resp.json()
        assert_error(data, "VALIDATION_ERROR")
        assert data["error"].startswith("code")


async def test_a_number_the_provider_refuses_is_a_400_and_can_be_retried_at_once(
    live: TestClient, fake_providers: FakeProviders, pool: asyncpg.Pool
) -> None:
    account = await new_account(pool, phone="+14155550151")
    sms = await _method(pool, account, "SMS")
    fake_providers.script("+14155550151", Reply(status=400, json={"code": 21211, "message": "Invalid 'To'"}))
    url = f"/api/me/contact-methods/{sms.id}/send-code"
    resp = await live.post(url, headers=account.headers)
    assert resp.status == 400
    assert_error(await resp.json(), "CODE_NOT_SENT")
    assert (await live.post(url, headers=account.headers)).status == 200  # nothing was sent: no throttle


async def test_someone_elses_method_is_not_found(
    live: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    intruder = await new_account(pool)
    sms = await _method(pool, account, "SMS")
    for path, body in (("send-code", None), ("verify", {"code": "123456"})):
        resp = await live.post(
            f"/api/me/contact-methods/{sms.id}/{path}", json=body, headers=intruder.headers
        )
        assert resp.status == 404
        assert_error(await resp.json(), "CONTACT_METHOD_NOT_FOUND")


async def test_in_dev_the_code_waits_in_the_outbox(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    sms = await _method(pool, account, "SMS")
    resp = await client.post(f"/api/me/contact-methods/{sms.id}/send-code", headers=account.headers)
    assert resp.status == 200, await resp.text()
    async with pool.acquire() as conn:
        kept = await conn.fetch(
            "SELECT * FROM outbox WHERE target = $1 AND alert_id IS NULL ORDER BY id", sms.target
        )
    match = re.search(r"code is ([0-9]{6})", kept[-1]["subject"])
    assert kept[-1]["channel"] == "SMS" and match
    resp = await client.post(
        f"/api/me/contact-methods/{sms.id}/verify", json={"code": match.group(1)}, headers=account.headers
    )
    assert resp.status == 200 and (await resp.json())["contact_method"]["verified"] is True
