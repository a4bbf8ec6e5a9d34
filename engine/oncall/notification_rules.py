"""Notification rules: "after N minutes, notify me via contact method M", and the plan they make.

The escalation engine pages a user by asking ``notification_plan`` what to send when: one
``PlannedContact`` per rule, in order of delay. A rule whose method cannot be paged yet (a phone
number not verified, a number that replied STOP to our texts) is still in the plan, with
``skipped_reason`` set, so the incident's timeline can say why that person was not called.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine import db, validate
from engine.errors import Conflict, NotFound, ValidationError
from engine.oncall.contacts import PHONE_TYPES
from engine.validate import UNSET

MAX_DELAY = 1440  # a day: a rule later than that is a mistake, not a plan
MAX_RULES = 50  # per user
SKIP_UNVERIFIED = "phone number not verified"
SKIP_OPTED_OUT = "the number replied STOP (texting START pages it again)"
_NOT_YOURS = "contact_method_id must be the id of one of your contact methods"


@dataclass(frozen=True)
class RuleInput:
    """What a new rule asks for; UNSET is a field left out. Checked here, whatever the types."""

    contact_method_id: object = UNSET
    delay_minutes: object = UNSET


@dataclass(frozen=True)
class NotificationRule:
    id: uuid.UUID
    contact_method_id: uuid.UUID
    delay_minutes: int
    type: str  # the method's channel type
    target: str
    created_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> NotificationRule:
        return cls(
            r["id"], r["contact_method_id"], r["delay_minutes"], r["type"], r["target"], r["created_at"]
        )


@dataclass(frozen=True)
class PlannedContact:
    """One notification of a paged user: when (minutes after they are paged), how, or why not."""

    delay_minutes: int
    contact_method_id: uuid.UUID
    type: str  # engine.channels.registry.CHANNEL_TYPES
    target: str
    skipped_reason: str | None  # None: send it; else why it is not sent (for the timeline)


SELECT_ALL = """
SELECT r.id, r.contact_method_id, r.delay_minutes, r.created_at, c.type, c.target, c.verified_at,
    o.opted_out_at
FROM notification_rules r JOIN contact_methods c ON c.id = r.contact_method_id
    LEFT JOIN sms_opt_outs o ON c.type = 'SMS' AND o.phone = c.target
WHERE r.user_id = $1
ORDER BY r.delay_minutes, r.created_at, r.id
"""
SELECT_ONE = """
SELECT r.id, r.contact_method_id, r.delay_minutes, r.created_at, c.type, c.target
FROM notification_rules r JOIN contact_methods c ON c.id = r.contact_method_id
WHERE r.id = $1 AND r.user_id = $2
"""
OWN_METHOD = "SELECT 1 FROM contact_methods WHERE id = $1 AND user_id = $2"
COUNT = "SELECT count(*) FROM notification_rules WHERE user_id = $1"
INSERT = """
INSERT INTO notification_rules (id, user_id, contact_method_id, delay_minutes, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, contact_method_id, delay_minutes) DO NOTHING
RETURNING id
"""
DELETE = "DELETE FROM notification_rules WHERE id = $1 AND user_id = $2 RETURNING id"


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(
        raw, lambda: NotFound("notification rule not found", code="NOTIFICATION_RULE_NOT_FOUND")
    )


async def list_rules(conn: db.Connection, user_id: uuid.UUID) -> list[NotificationRule]:
    """The user's rules in the order they fire."""
    return [NotificationRule.from_record(r) for r in await conn.fetch(SELECT_ALL, user_id)]


def _delay(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DELAY:
        raise ValidationError(
            f"delay_minutes must be a whole number from 0 to {MAX_DELAY}", field="delay_minutes"
        )
    return value


def _method_id(value: object) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(_NOT_YOURS, field="contact_method_id")


async def create_rule(
    conn: db.Connection, user_id: uuid.UUID, wanted: RuleInput, *, now: datetime
) -> NotificationRule:
    """A method of the user's and a delay; a method of someone else's is a 400 naming
    contact_method_id (as an unknown id: nothing says it exists). The same rule twice is a Conflict."""
    if wanted.contact_method_id is UNSET:
        raise ValidationError("contact_method_id is required", field="contact_method_id")
    method_id = _method_id(wanted.contact_method_id)
    if wanted.delay_minutes is UNSET:
        raise ValidationError("delay_minutes is required", field="delay_minutes")
    delay = _delay(wanted.delay_minutes)
    async with conn.transaction():
        if await conn.fetchval(OWN_METHOD, method_id, user_id) is None:
            raise ValidationError(_NOT_YOURS, field="contact_method_id")
        if await conn.fetchval(COUNT, user_id) >= MAX_RULES:
            raise ValidationError(
                f"a user has at most {MAX_RULES} notification rules; delete one first",
                code="NOTIFICATION_RULE_LIMIT",
            )
        rule_id = await conn.fetchval(INSERT, uuid.uuid4(), user_id, method_id, delay, now)
        if rule_id is None:
            raise Conflict("this rule exists already", code="NOTIFICATION_RULE_EXISTS")
        record = await conn.fetchrow(SELECT_ONE, rule_id, user_id)
    assert record is not None
    return NotificationRule.from_record(record)


async def delete_rule(conn: db.Connection, user_id: uuid.UUID, rule_id: uuid.UUID) -> None:
    if await conn.fetchval(DELETE, rule_id, user_id) is None:
        raise NotFound("notification rule not found", code="NOTIFICATION_RULE_NOT_FOUND")


async def notification_plan(conn: db.Connection, user_id: uuid.UUID) -> list[PlannedContact]:
    """What paging this user means, in order: each rule's delay, method and target, and for a
    rule that must not be sent (an unverified phone number, an opted-out one) the reason it is skipped."""
    plan = []
    for r in await conn.fetch(SELECT_ALL, user_id):
        skipped = None
        if r["type"] in PHONE_TYPES and r["verified_at"] is None:
            skipped = SKIP_UNVERIFIED
        elif r["opted_out_at"] is not None:
            skipped = SKIP_OPTED_OUT
        plan.append(
            PlannedContact(r["delay_minutes"], r["contact_method_id"], r["type"], r["target"], skipped)
        )
    return plan
