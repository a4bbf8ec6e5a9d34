"""Webhooks: a named inbound URL and where its alerts go. A webhook belongs to a team: its members
read it (viewer), send it a test (responder) and change it (admin); to anyone else it does not
exist. ``user_id`` is who made it."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis

from engine import db, notifications, queue, validate
from engine.alerts import call_counts, inbound, signing
from engine.auth.users import User
from engine.channels.registry import CHANNEL_TYPES, TARGET_KEYS, check_address, unmasked_targets
from engine.channels.targets import normalise_targets
from engine.errors import Conflict, NotFound, ValidationError
from engine.incidents import DedupBy
from engine.teams import Role
from engine.teams.membership import CALLER_ROLE, TEAMS_OF, allowed, personal_team_id, require_role
from engine.validate import UNSET, Unset


class WebhookStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"


@dataclass(frozen=True)
class WebhookInput:
    """What a create or an update asks for. UNSET is a field left out (an update keeps its value),
    None a null. Values typed ``object`` are checked here whatever their type (engine/validate.py)."""

    name: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    alias: str | Unset | None = UNSET
    status: object = UNSET
    notification_types: object = UNSET
    target_channels: object = UNSET
    signing_secret: object = UNSET
    dedup_by: object = UNSET
    notify_on_resolve: object = UNSET
    repage_on_change: bool | Unset = UNSET
    escalation_policy_id: object = UNSET
    team_id: object = UNSET  # create: default the caller's personal team; a webhook stays in its team


DEFAULT_NOTIFY_ON_RESOLVE = ["EMAIL", "PUSH_NOTIF"]
_ALIAS = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")

COLUMNS = f"""id, user_id, team_id, name, description, alias, status, token, notification_types, targets,
    {call_counts.COLUMNS}, last_call_at, created_at, updated_at,
    signing_secret IS NOT NULL AS signed, dedup_by, notify_on_resolve, repage_on_change, escalation_policy_id,
    (SELECT count(*) FROM incidents i WHERE i.webhook_id = webhooks.id AND i.status <> 'resolved')
        AS incidents_open"""

INSERT = f"""
INSERT INTO webhooks (id, user_id, name, description, alias, status, token, notification_types, targets,
    signing_secret, dedup_by, notify_on_resolve, repage_on_change, team_id, escalation_policy_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT DO NOTHING
RETURNING {COLUMNS}
"""
# LIMIT NULL is no limit: callers inside the engine may read them all.
# The webhooks of every team of user $1.
SELECT_ALL = f"""
SELECT {COLUMNS} FROM webhooks WHERE team_id IN {TEAMS_OF.format(user="$1")}
ORDER BY created_at, id LIMIT $2 OFFSET $3
"""
COUNT_ALL = f"SELECT count(*) FROM webhooks WHERE team_id IN {TEAMS_OF.format(user='$1')}"
SELECT_ONE = f"""
SELECT {COLUMNS}, {CALLER_ROLE.format(team="webhooks.team_id", user="$2")} FROM webhooks WHERE id = $1
"""
ALIAS_TAKEN = "SELECT 1 FROM webhooks WHERE team_id = $1 AND lower(alias) = lower($2) AND id <> $3"
UPDATE = f"""
UPDATE webhooks SET name = $3, description = $4, alias = $5, status = $6, notification_types = $7,
    targets = $8, signing_secret = CASE WHEN $9 THEN $10 ELSE signing_secret END, dedup_by = $11,
    notify_on_resolve = $12, repage_on_change = $13, escalation_policy_id = $14, updated_at = now()
WHERE id = $1 AND team_id = $2
RETURNING {COLUMNS}
"""
DELETE = "DELETE FROM webhooks WHERE id = $1 AND team_id = $2 RETURNING token"
POLICY_TEAM = "SELECT team_id FROM escalation_policies WHERE id = $1"
LAST_TEST = """
SELECT a.id, a.status, a.received_at, a.finished_at,
    coalesce(jsonb_agg(jsonb_build_object(
        'channel', d.channel, 'target', d.target, 'status', d.status, 'attempts', d.attempts,
        'last_error', d.last_error) ORDER BY d.channel, d.target) FILTER (WHERE d.id IS NOT NULL),
        '[]'::jsonb) AS deliveries
FROM alerts a LEFT JOIN deliveries d ON d.alert_id = a.id
WHERE a.webhook_id = $1 AND a.is_test
GROUP BY a.id ORDER BY a.received_at DESC LIMIT 1
"""


def new_token() -> str:
    """The secret path of a webhook URL: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, lambda: NotFound("webhook not found", code="WEBHOOK_NOT_FOUND"))


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 2 else "webhook"


def _types(raw: object, available: Collection[str]) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise ValidationError(
            f"notification_types must be a non-empty array of {', '.join(CHANNEL_TYPES)}",
            field="notification_types",
        )
    types: list[str] = []
    for i, value in enumerate(raw):
        if value not in CHANNEL_TYPES:
            raise ValidationError(
                f"notification_types[{i}] must be one of {', '.join(CHANNEL_TYPES)}",
                field=f"notification_types[{i}]",
            )
        if value not in available:
            raise ValidationError(
                f"{value} is not configured on this server (see the README's configuration table)",
                field=f"notification_types[{i}]",
                code="CHANNEL_NOT_CONFIGURED",
            )
        if value not in types:
            types.append(value)
    return types


TYPES_BY_KEY = {key: kind for kind, key in TARGET_KEYS.items()}


def _targets(
    raw: object, types: list[str], owner: User, available: Collection[str] | None = None
) -> dict[str, list[str]]:
    """The webhook's targets, with the owner's defaults for types given none. ``available``: the
    targets were given (not the stored ones again), and their addresses are checked against it."""
    targets = normalise_targets(raw if raw is not None and raw is not UNSET else {}, types)
    if available is not None:
        for key, given in targets.items():
            for i, target in enumerate(given):
                check_address(
                    TYPES_BY_KEY[key], target, field=f"target_channels.{key}[{i}]", available=available
                )
    for kind in types:
        key = TARGET_KEYS[kind]
        if not targets.get(key):
            fallback = owner.default_target(key)
            if fallback is None:
                raise ValidationError(
                    f"target_channels.{key} is required for {kind}: your account has no default for it",
                    field=f"target_channels.{key}",
                )
            targets[key] = [fallback]
    return targets


def _notify_on_resolve(raw: object) -> list[str]:
    """Channels that hear of a resolve: any but CALL (a recovery never rings a phone)."""
    allowed = [kind for kind in CHANNEL_TYPES if kind != "CALL"]
    if not isinstance(raw, list):
        raise ValidationError(
            f"notify_on_resolve must be an array of {', '.join(allowed)}", field="notify_on_resolve"
        )
    kinds: list[str] = []
    for i, value in enumerate(raw):
        if value not in allowed:
            why = (
                "a resolve never places a call" if value == "CALL" else f"must be one of {', '.join(allowed)}"
            )
            raise ValidationError(f"notify_on_resolve[{i}]: {why}", field="notify_on_resolve")
        if value not in kinds:
            kinds.append(value)
    return kinds


def _alias(value: str | Unset | None) -> str | None:
    alias = validate.text(value, "alias", max_length=63)
    if alias is None:
        return None
    alias = alias.lower()
    if not _ALIAS.fullmatch(alias):
        raise ValidationError(
            "alias must be 2-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
            field="alias",
        )
    return alias


async def _policy(conn: db.Connection, team_id: uuid.UUID, value: object) -> uuid.UUID | None:
    """The webhook's escalation policy: null (or left out) is none, its targetChannels are paged
    as always; else a policy of the webhook's own team."""
    if value is UNSET or value is None:
        return None
    try:
        policy_id = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        policy_id = None
    if policy_id is None or await conn.fetchval(POLICY_TEAM, policy_id) != team_id:
        raise ValidationError(
            "escalation_policy_id must be the id of an escalation policy of the webhook's team",
            field="escalation_policy_id",
        )
    return policy_id


def _team_id(value: object) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError("team_id must be a team id", field="team_id")


async def _team(conn: db.Connection, owner: User, value: object) -> uuid.UUID:
    """The team a new webhook goes to (the caller's personal team by default); admin there."""
    team_id = await personal_team_id(conn, owner.id) if value is UNSET else _team_id(value)
    await require_role(conn, team_id, owner.id, Role.ADMIN)
    return team_id


async def create_webhook(
    conn: db.Connection, owner: User, wanted: WebhookInput, available: Collection[str]
) -> asyncpg.Record:
    """Validate a create request and store the webhook with a fresh token, in ``team_id`` (the
    caller's personal team by default), where the caller must be an admin."""
    name = validate.text(wanted.name, "name", required=True, min_length=3, max_length=100)
    assert name is not None
    description = validate.text(wanted.description, "description", max_length=1000, nullable=True)
    alias = _alias(wanted.alias)
    status = validate.choice(wanted.status, "status", tuple(WebhookStatus), default=WebhookStatus.ACTIVE)
    types = _types(wanted.notification_types, available)
    targets = _targets(wanted.target_channels, types, owner, available)
    secret = signing.parse_secret(None if wanted.signing_secret is UNSET else wanted.signing_secret)
    dedup_by = validate.choice(wanted.dedup_by, "dedup_by", tuple(DedupBy), default=DedupBy.GROUP)
    notify = (
        DEFAULT_NOTIFY_ON_RESOLVE
        if wanted.notify_on_resolve is UNSET
        else _notify_on_resolve(wanted.notify_on_resolve)
    )
    repage = False if wanted.repage_on_change is UNSET else wanted.repage_on_change
    team_id = await _team(conn, owner, wanted.team_id)
    policy_id = await _policy(conn, team_id, wanted.escalation_policy_id)
    base = alias or slugify(name)
    for n in range(1, 100):
        candidate = base if n == 1 else f"{base}-{n}"
        record = await conn.fetchrow(
            INSERT,
            uuid.uuid4(),
            owner.id,
            name,
            description,
            candidate,
            status,
            new_token(),
            types,
            targets,
            secret,
            dedup_by,
            notify,
            repage,
            team_id,
            policy_id,
        )
        if record is not None:
            return record
        if alias is not None:
            raise Conflict(
                f"alias '{alias}' is already used by another webhook of the team", code="ALIAS_TAKEN"
            )
    raise Conflict("could not find a free alias; give one explicitly", code="ALIAS_TAKEN")


async def list_webhooks(
    conn: db.Connection, user_id: uuid.UUID, *, limit: int | None = None, offset: int = 0
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ALL, user_id, limit, offset)


async def count_webhooks(conn: db.Connection, user_id: uuid.UUID) -> int:
    return await conn.fetchval(COUNT_ALL, user_id)


async def get_webhook(
    conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID, minimum: Role = Role.VIEWER
) -> asyncpg.Record:
    """The webhook, if the user has at least ``minimum`` in its team (not a member: NotFound)."""
    record = await conn.fetchrow(SELECT_ONE, webhook_id, user_id)
    not_found = NotFound("webhook not found", code="WEBHOOK_NOT_FOUND")
    allowed(record["caller_role"] if record else None, minimum, not_found)
    assert record is not None
    return record


async def update_webhook(
    conn: db.Connection,
    redis: Redis,
    owner: User,
    webhook_id: uuid.UUID,
    wanted: WebhookInput,
    available: Collection[str],
) -> asyncpg.Record:
    """Apply a partial update; fields left out keep their value. The inbound cache forgets the
    token once the change is committed (``conn`` must not be inside a transaction of the caller's)."""
    async with conn.transaction():
        current = await get_webhook(conn, owner.id, webhook_id, Role.ADMIN)
        if wanted.team_id is not UNSET and _team_id(wanted.team_id) != current["team_id"]:
            raise Conflict("a webhook stays in the team it was made in", code="WEBHOOK_TEAM_FIXED")
        name = validate.text(wanted.name, "name", min_length=3, max_length=100) or current["name"]
        description = (
            current["description"]
            if wanted.description is UNSET
            else validate.text(wanted.description, "description", max_length=1000, nullable=True)
        )
        alias = _alias(wanted.alias) or current["alias"]
        if await conn.fetchval(ALIAS_TAKEN, current["team_id"], alias, webhook_id):
            raise Conflict(
                f"alias '{alias}' is already used by another webhook of the team", code="ALIAS_TAKEN"
            )
        status = validate.choice(wanted.status, "status", tuple(WebhookStatus)) or current["status"]
        types = (
            list(current["notification_types"])
            if wanted.notification_types is UNSET
            else _types(wanted.notification_types, available)
        )
        raw_targets = (
            current["targets"]
            if wanted.target_channels is UNSET
            else unmasked_targets(wanted.target_channels, current["targets"])
        )
        targets = _targets(raw_targets, types, owner, None if wanted.target_channels is UNSET else available)
        new_secret = wanted.signing_secret is not UNSET
        secret = signing.parse_secret(wanted.signing_secret) if new_secret else None
        dedup_by = validate.choice(wanted.dedup_by, "dedup_by", tuple(DedupBy)) or current["dedup_by"]
        notify = (
            list(current["notify_on_resolve"])
            if wanted.notify_on_resolve is UNSET
            else _notify_on_resolve(wanted.notify_on_resolve)
        )
        repage = current["repage_on_change"] if wanted.repage_on_change is UNSET else wanted.repage_on_change
        policy_id = (
            current["escalation_policy_id"]
            if wanted.escalation_policy_id is UNSET
            else await _policy(conn, current["team_id"], wanted.escalation_policy_id)
        )
        values = (
            *(webhook_id, current["team_id"], name, description, alias, status, types, targets, new_secret),
            secret,
            *(dedup_by, notify, repage, policy_id),
        )
        try:
            record = await conn.fetchrow(UPDATE, *values)
        except asyncpg.UniqueViolationError:  # another request took the alias since ALIAS_TAKEN looked
            raise Conflict(
                f"alias '{alias}' is already used by another webhook of the team", code="ALIAS_TAKEN"
            ) from None
        if current["status"] == WebhookStatus.ACTIVE and status == WebhookStatus.PAUSED:
            await notifications.create(
                conn,
                current["user_id"],  # the inbox of its maker, as every notice of the webhook
                notifications.NotificationKind.WEBHOOK_PAUSED,
                f"Webhook paused: {name}",
                "Alerts sent to its URL are refused (409) until it is resumed.",
                webhook_id=webhook_id,
            )
    assert record is not None
    await inbound.forget_token(redis, record["token"])
    return record


async def delete_webhook(
    conn: db.Connection, redis: Redis, user_id: uuid.UUID, webhook_id: uuid.UUID
) -> None:
    """Delete the webhook with its alerts and deliveries (an admin of its team); its URL answers
    404 from then on."""
    current = await get_webhook(conn, user_id, webhook_id, Role.ADMIN)
    token = await conn.fetchval(DELETE, webhook_id, current["team_id"])
    if token is None:  # deleted by someone else meanwhile
        raise NotFound("webhook not found", code="WEBHOOK_NOT_FOUND")
    await inbound.forget_token(redis, token)


async def last_test(conn: db.Connection, webhook_id: uuid.UUID) -> dict[str, Any] | None:
    """The newest test send of a webhook the caller may read (get_webhook checked that)."""
    record = await conn.fetchrow(LAST_TEST, webhook_id)
    if record is None:
        return None
    return {
        "alert_id": str(record["id"]),
        "status": record["status"],
        "sent_at": record["received_at"],
        "finished_at": record["finished_at"],
        "deliveries": record["deliveries"],
    }


async def send_test(redis: ArqRedis, webhook: asyncpg.Record, *, request_id: str | None = None) -> str:
    """Queue a clearly marked test alert through the normal path; it is kept out of the counters."""
    alert_id = str(uuid.uuid4())
    body = {
        "title": f"Test notification from {webhook['name']}",
        "message": "A test sent from Monoduty to check this webhook's channels. No action needed.",
        "severity": "info",
        "source": "monoduty",
    }
    await queue.enqueue_alert(
        redis,
        alert_id,
        str(webhook["id"]),
        body=json.dumps(body),
        content_type="application/json",
        received_at=datetime.now(UTC),
        request_id=request_id,
        is_test=True,
    )
    return alert_id
