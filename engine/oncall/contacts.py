"""Contact methods: how one person can be reached (a channel type and its target).

Every user starts with methods made from their profile, and rules to go with them
(``create_defaults``, called in the transaction that creates the user; ``monoduty migrate`` does
the same once for users from before contact methods, in schema.sql). After that the methods are
the user's own: changing the profile's email, phone or push topic leaves them alone, so a
verified number is never silently re-pointed at another one, and a method the user deleted is not
brought back. A phone method (SMS, CALL) is paged only once verified (engine/oncall/verification.py);
an EMAIL method is verified when its address is the user's login, and email and push methods are
paged whether or not they are.

A number that replied STOP to our SMS number is **opted out** (``opt_out``, kept per number in
sms_opt_outs): its SMS methods are not paged, whoever's they are, until it replies START
(``opt_in``). Calls to it go on: STOP is about texts.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine import db, validate
from engine.channels.registry import CHANNEL_TYPES, check_address, validate_target
from engine.errors import Conflict, NotFound, ValidationError
from engine.validate import UNSET

PHONE_TYPES = ("SMS", "CALL")  # the methods that need a verified number before they are paged
# The default rules, as PagerDuty's and Grafana OnCall's: push and email at once, SMS after a
# minute, a call after three. schema.sql's migration of existing users uses the same numbers.
DEFAULT_DELAYS = {"PUSH_NOTIF": 0, "EMAIL": 0, "SMS": 1, "CALL": 3}
MAX_METHODS = 20  # per user: enough for every phone and address a person has


@dataclass(frozen=True)
class ContactMethodInput:
    """What a create or an update asks for; UNSET is a field left out. Checked here, whatever
    the values' types."""

    type: object = UNSET
    target: object = UNSET


@dataclass(frozen=True)
class ContactMethod:
    id: uuid.UUID
    user_id: uuid.UUID
    type: str  # one of CHANNEL_TYPES
    target: str
    verified_at: datetime | None
    created_at: datetime
    opted_out_at: datetime | None = None  # an SMS method whose number replied STOP: not paged

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> ContactMethod:
        return cls(
            r["id"],
            r["user_id"],
            r["type"],
            r["target"],
            r["verified_at"],
            r["created_at"],
            r["opted_out_at"],
        )

    @property
    def needs_verification(self) -> bool:
        """A phone number not yet verified: it is not paged."""
        return self.type in PHONE_TYPES and self.verified_at is None


# An SMS method's number may have replied STOP (also in RETURNING: the row's own columns are in scope).
OPTED_OUT_AT = """(SELECT o.opted_out_at FROM sms_opt_outs o
    WHERE contact_methods.type = 'SMS' AND o.phone = contact_methods.target) AS opted_out_at"""
COLUMNS = f"id, user_id, type, target, verified_at, created_at, {OPTED_OUT_AT}"
INSERT = f"""
INSERT INTO contact_methods (id, user_id, type, target, verified_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id, type, target) DO NOTHING
RETURNING {COLUMNS}
"""
INSERT_RULE = """
INSERT INTO notification_rules (id, user_id, contact_method_id, delay_minutes) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""
MARK_DEFAULTS = "UPDATE users SET contact_defaults_at = $2 WHERE id = $1"
SELECT_ALL = f"SELECT {COLUMNS} FROM contact_methods WHERE user_id = $1 ORDER BY created_at, id"
SELECT_ONE = f"SELECT {COLUMNS} FROM contact_methods WHERE id = $1 AND user_id = $2"
COUNT = "SELECT count(*) FROM contact_methods WHERE user_id = $1"
LOGIN_EMAIL = "SELECT email FROM users WHERE id = $1"
UPDATE_TARGET = f"""
UPDATE contact_methods SET target = $3, verified_at = $4 WHERE id = $1 AND user_id = $2
RETURNING {COLUMNS}
"""
# A new target is a new number: any code sent to the old one must not verify it.
FORGET_VERIFICATION = "DELETE FROM contact_method_verifications WHERE contact_method_id = $1"
DELETE = "DELETE FROM contact_methods WHERE id = $1 AND user_id = $2 RETURNING id"
OPT_OUT = """
INSERT INTO sms_opt_outs (phone, opted_out_at) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING RETURNING phone
"""
OPT_IN = "DELETE FROM sms_opt_outs WHERE phone = $1 RETURNING phone"
# Whom a text from this number speaks for: the people who proved they hold it.
VERIFIED_SMS_USERS = """
SELECT DISTINCT user_id FROM contact_methods WHERE type = 'SMS' AND target = $1 AND verified_at IS NOT NULL
"""


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(
        raw, lambda: NotFound("contact method not found", code="CONTACT_METHOD_NOT_FOUND")
    )


async def create_defaults(
    conn: db.Connection,
    user_id: uuid.UUID,
    *,
    email: str,
    phone: str | None,
    push_topic: str | None,
    now: datetime,
) -> list[ContactMethod]:
    """A new user's methods from their profile (the email verified: it is their login) and the
    default rules; call it in the transaction that creates the user."""
    profile = {"PUSH_NOTIF": push_topic, "EMAIL": email, "SMS": phone, "CALL": phone}
    made = []
    async with conn.transaction():
        for kind, target in profile.items():
            if target is None:
                continue
            verified = now if kind == "EMAIL" else None
            record = await conn.fetchrow(INSERT, uuid.uuid4(), user_id, kind, target, verified, now)
            if record is None:
                continue
            made.append(ContactMethod.from_record(record))
            await conn.execute(INSERT_RULE, uuid.uuid4(), user_id, record["id"], DEFAULT_DELAYS[kind])
        await conn.execute(MARK_DEFAULTS, user_id, now)
    return made


async def list_methods(conn: db.Connection, user_id: uuid.UUID) -> list[ContactMethod]:
    return [ContactMethod.from_record(r) for r in await conn.fetch(SELECT_ALL, user_id)]


async def get_method(conn: db.Connection, user_id: uuid.UUID, method_id: uuid.UUID) -> ContactMethod:
    """The user's method, or NotFound (someone else's too)."""
    record = await conn.fetchrow(SELECT_ONE, method_id, user_id)
    if record is None:
        raise NotFound("contact method not found", code="CONTACT_METHOD_NOT_FOUND")
    return ContactMethod.from_record(record)


def _target(kind: str, value: object, available: Collection[str]) -> str:
    if value is None or value is UNSET:
        raise ValidationError("target is required", field="target")
    target = validate_target(kind, value, field="target")
    check_address(kind, target, field="target", available=available)
    return target


async def _verified_at(
    conn: db.Connection, user_id: uuid.UUID, kind: str, target: str, now: datetime
) -> datetime | None:
    """An EMAIL method at the user's login address is verified: they log in with it."""
    if kind != "EMAIL":
        return None
    login = await conn.fetchval(LOGIN_EMAIL, user_id)
    return now if isinstance(login, str) and login.lower() == target.lower() else None


async def create_method(
    conn: db.Connection,
    user_id: uuid.UUID,
    wanted: ContactMethodInput,
    *,
    now: datetime,
    available: Collection[str] = frozenset(),
) -> ContactMethod:
    """A type and a target in its channel's format; the same type and target twice is a Conflict.
    ``available`` (registry.Deliverable) says whether a target may name a private address."""
    kind = validate.choice(wanted.type, "type", CHANNEL_TYPES)
    if kind is None:
        raise ValidationError(f"type is required: one of {', '.join(CHANNEL_TYPES)}", field="type")
    target = _target(kind, wanted.target, available)
    async with conn.transaction():
        if await conn.fetchval(COUNT, user_id) >= MAX_METHODS:
            raise ValidationError(
                f"a user has at most {MAX_METHODS} contact methods; delete one first",
                code="CONTACT_METHOD_LIMIT",
            )
        verified = await _verified_at(conn, user_id, kind, target, now)
        record = await conn.fetchrow(INSERT, uuid.uuid4(), user_id, kind, target, verified, now)
    if record is None:
        raise Conflict(f"you already have this {kind} contact method", code="CONTACT_METHOD_EXISTS")
    return ContactMethod.from_record(record)


async def update_method(
    conn: db.Connection,
    user_id: uuid.UUID,
    method_id: uuid.UUID,
    wanted: ContactMethodInput,
    *,
    now: datetime,
    available: Collection[str] = frozenset(),
) -> ContactMethod:
    """A new target starts unverified (its rules stay). The type is fixed. ``available``: as for
    create_method."""
    if wanted.type is not UNSET:
        raise ValidationError("type cannot change; add a new contact method instead", field="type")
    current = await get_method(conn, user_id, method_id)
    if wanted.target is UNSET:
        return current
    target = _target(current.type, wanted.target, available)
    if target == current.target:
        return current
    async with conn.transaction():
        verified = await _verified_at(conn, user_id, current.type, target, now)
        try:
            record = await conn.fetchrow(UPDATE_TARGET, method_id, user_id, target, verified)
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"you already have this {current.type} contact method", code="CONTACT_METHOD_EXISTS"
            ) from None
        await conn.execute(FORGET_VERIFICATION, method_id)
    if record is None:  # deleted meanwhile
        raise NotFound("contact method not found", code="CONTACT_METHOD_NOT_FOUND")
    return ContactMethod.from_record(record)


async def delete_method(conn: db.Connection, user_id: uuid.UUID, method_id: uuid.UUID) -> None:
    """Delete the method and its notification rules."""
    if await conn.fetchval(DELETE, method_id, user_id) is None:
        raise NotFound("contact method not found", code="CONTACT_METHOD_NOT_FOUND")


async def opt_out(conn: db.Connection, phone: str, now: datetime) -> bool:
    """The number replied STOP: its SMS methods are not paged until START. False if it already had."""
    return await conn.fetchval(OPT_OUT, phone, now) is not None


async def opt_in(conn: db.Connection, phone: str) -> bool:
    """The number replied START: its SMS methods are paged again. False if it had not opted out."""
    return await conn.fetchval(OPT_IN, phone) is not None


async def verified_sms_users(conn: db.Connection, phone: str) -> list[uuid.UUID]:
    """The users with a verified SMS method at ``phone`` (a text from it may act as them)."""
    return [r["user_id"] for r in await conn.fetch(VERIFIED_SMS_USERS, phone)]
