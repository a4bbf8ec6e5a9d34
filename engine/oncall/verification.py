"""Phone verification: a number is paged only after its owner typed the code sent to it.

``send_verification`` texts (or, for a CALL method, says) a 6-digit code through the method's own
channel; ``verify`` checks it. The rules, all counted in PostgreSQL with the caller's clock:

- a code lasts ``CODE_TTL`` (10 minutes) and only a salted SHA-256 of it is stored; it is never logged;
- one code per method per ``RESEND_AFTER`` (60 s), so the route cannot be used to spam a number;
- ``MAX_TRIES`` (5) wrong codes lock the method for ``LOCK_FOR`` (10 minutes): no code is checked
  or sent until then, and the code is forgotten. Tries are not given back by sending a new code.

A right code verifies every phone method of the user with that number (SMS and CALL alike): it
proves they hold the phone.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from engine import db
from engine.channels.base import Channel, DeliveryError, Message
from engine.errors import Conflict, MonodutyError, NotFound, Unavailable, ValidationError
from engine.oncall.contacts import COLUMNS, PHONE_TYPES, ContactMethod

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
RESEND_AFTER = timedelta(seconds=60)
MAX_TRIES = 5
LOCK_FOR = timedelta(minutes=10)

_CODE = re.compile(r"[0-9]{6}")

LOCK_METHOD = f"SELECT {COLUMNS} FROM contact_methods WHERE id = $1 AND user_id = $2 FOR UPDATE"
SELECT_STATE = """
SELECT code_hash, salt, sent_at, expires_at, tries_left, locked_until
FROM contact_method_verifications WHERE contact_method_id = $1 FOR UPDATE
"""
UPSERT_CODE = """
INSERT INTO contact_method_verifications
    (contact_method_id, code_hash, salt, sent_at, expires_at, tries_left, locked_until)
VALUES ($1, $2, $3, $4, $5, $6, NULL)
ON CONFLICT (contact_method_id) DO UPDATE SET code_hash = $2, salt = $3, sent_at = $4, expires_at = $5,
    tries_left = $6, locked_until = NULL
"""
FORGET_CODE = "DELETE FROM contact_method_verifications WHERE contact_method_id = $1"
WRONG_CODE = """
UPDATE contact_method_verifications
SET tries_left = $2, locked_until = $3, code_hash = CASE WHEN $2 = 0 THEN NULL ELSE code_hash END
WHERE contact_method_id = $1
"""
EXPIRE_CODE = "UPDATE contact_method_verifications SET code_hash = NULL WHERE contact_method_id = $1"
# The number is proven: every phone method of this user at it is verified.
MARK_VERIFIED = f"""
UPDATE contact_methods SET verified_at = $3
WHERE user_id = $1 AND target = $2 AND type = ANY($4::text[]) AND verified_at IS NULL
RETURNING {COLUMNS}
"""
FORGET_CODES_OF = """
DELETE FROM contact_method_verifications
WHERE contact_method_id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class Verification:
    """A code on its way: when it was sent, until when it works, how many tries are left."""

    sent_at: datetime
    expires_at: datetime
    tries_left: int


class Throttled(MonodutyError):
    """429 with Retry-After, in the seed's error format."""

    status = 429

    def __init__(self, message: str, *, code: str, retry_after: timedelta) -> None:
        super().__init__(message, code=code)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after.total_seconds())))}


def _locked(until: datetime, now: datetime) -> Throttled:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return Throttled(
        f"too many wrong codes: verification is locked for {minutes} more minute(s)",
        code="VERIFICATION_LOCKED",
        retry_after=until - now,
    )


def _hash(code: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + code.encode()).digest()


def _message(kind: str, code: str, now: datetime) -> Message:
    """The code as the method's channel says it: in one SMS line, or digit by digit, twice, on a call."""
    minutes = int(CODE_TTL.total_seconds() // 60)
    if kind == "CALL":
        spoken = " ".join(code)
        title = f"Your verification code is {spoken}. Again: {spoken}"
    else:
        title = f"Your Monoduty verification code is {code}"
    return Message(
        alert_id="",  # no alert: the dev outbox keeps it without one
        webhook_name="phone verification",
        title=title,
        body=f"It expires in {minutes} minutes. If you did not ask for it, ignore this message.",
        severity="info",
        source=None,
        received_at=now,
    )


async def _lock_method(conn: db.Connection, user_id: uuid.UUID, method_id: uuid.UUID) -> ContactMethod:
    record = await conn.fetchrow(LOCK_METHOD, method_id, user_id)
    if record is None:
        raise NotFound("contact method not found", code="CONTACT_METHOD_NOT_FOUND")
    method = ContactMethod.from_record(record)
    if method.type not in PHONE_TYPES:
        raise ValidationError(
            f"only SMS and CALL contact methods are verified; a {method.type} method is paged as it is",
            code="NOT_VERIFIABLE",
        )
    if method.verified_at is not None:
        raise Conflict("this number is verified already", code="ALREADY_VERIFIED")
    return method


async def send_verification(
    conn: db.Connection,
    user_id: uuid.UUID,
    method_id: uuid.UUID,
    channels: Mapping[str, Channel],
    *,
    now: datetime,
) -> Verification:
    """Send a new code to the method's number by its own channel (SMS or CALL)."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_bytes(16)
    async with conn.transaction():
        method = await _lock_method(conn, user_id, method_id)
        channel = channels.get(method.type)
        if channel is None:
            raise ValidationError(
                f"{method.type} is not configured on this server, so no code can be sent",
                code="CHANNEL_NOT_CONFIGURED",
            )
        state = await conn.fetchrow(SELECT_STATE, method_id)
        tries = MAX_TRIES
        if state is not None:
            if state["locked_until"] is not None and state["locked_until"] > now:
                raise _locked(state["locked_until"], now)
            if now < state["sent_at"] + RESEND_AFTER:
                raise Throttled(
                    "a code was sent to this number less than a minute ago; wait before asking again",
                    code="VERIFICATION_THROTTLED",
                    retry_after=state["sent_at"] + RESEND_AFTER - now,
                )
            if state["locked_until"] is None:  # a lock that has run out gives the tries back
                tries = state["tries_left"]
        verification = Verification(now, now + CODE_TTL, tries)
        await conn.execute(
            UPSERT_CODE, method_id, _hash(code, salt), salt, now, verification.expires_at, tries
        )
    # Sent after the commit: no row stays locked while a provider answers. The throttle counts
    # from here even if the send fails, unless the provider refused outright (nothing was sent).
    try:
        await channel.send(_message(method.type, code, now), method.target)
    except DeliveryError as exc:
        if exc.permanent:
            await conn.execute(FORGET_CODE, method_id)
            raise ValidationError(f"the code could not be sent: {exc}", code="CODE_NOT_SENT") from None
        raise Unavailable(f"the code could not be sent for now: {exc}") from None
    return verification


def _code(value: object) -> str:
    code = "".join(value.split()) if isinstance(value, str) else None
    if code is None or not _CODE.fullmatch(code):
        raise ValidationError(f"code must be the {CODE_DIGITS} digits sent to the number", field="code")
    return code


async def verify(
    conn: db.Connection, user_id: uuid.UUID, method_id: uuid.UUID, code: object, *, now: datetime
) -> ContactMethod:
    """Check ``code``; right, the number is verified and the method returned. Wrong, expired or
    locked: a 400 (WRONG_CODE, CODE_EXPIRED, NO_CODE_SENT) or 429 (VERIFICATION_LOCKED); each
    wrong try is counted in the database before the error is raised."""
    given = _code(code)
    failure: MonodutyError | None = None
    async with conn.transaction():
        method = await _lock_method(conn, user_id, method_id)
        state = await conn.fetchrow(SELECT_STATE, method_id)
        failure = await _check(conn, method_id, state, given, now)
        if failure is None:
            marked = await conn.fetch(MARK_VERIFIED, user_id, method.target, now, list(PHONE_TYPES))
            await conn.execute(FORGET_CODES_OF, [r["id"] for r in marked])
            method = next(ContactMethod.from_record(r) for r in marked if r["id"] == method_id)
    if failure is not None:
        raise failure
    return method


async def _check(
    conn: db.Connection, method_id: uuid.UUID, state: asyncpg.Record | None, given: str, now: datetime
) -> MonodutyError | None:
    """None when ``given`` is the code; else the error to answer, its try already recorded."""
    if state is not None and state["locked_until"] is not None and state["locked_until"] > now:
        return _locked(state["locked_until"], now)
    if state is None or state["code_hash"] is None:
        return ValidationError("no code is waiting: send one first", field="code", code="NO_CODE_SENT")
    if now >= state["expires_at"]:
        await conn.execute(EXPIRE_CODE, method_id)
        return ValidationError("the code has expired: send a new one", field="code", code="CODE_EXPIRED")
    if hmac.compare_digest(_hash(given, state["salt"]), state["code_hash"]):
        return None
    left = state["tries_left"] - 1
    if left <= 0:
        await conn.execute(WRONG_CODE, method_id, 0, now + LOCK_FOR)
        return _locked(now + LOCK_FOR, now)
    await conn.execute(WRONG_CODE, method_id, left, None)
    return ValidationError(f"the code is not right; {left} tries left", field="code", code="WRONG_CODE")
