"""Webhooks: a named inbound URL and where its alerts go. Every query is scoped to its owner."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis

from engine import db, notifications, queue, validate
from engine.alerts import inbound, signing
from engine.auth.users import User
from engine.channels.registry import CHANNEL_TYPES, TARGET_KEYS
from engine.channels.targets import normalise_targets
from engine.errors import Conflict, NotFound, ValidationError
from engine.incidents import DedupBy


class WebhookStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"


FIELDS = {
    "name",
    "description",
    "alias",
    "notificationTypes",
    "targetChannels",
    "status",
    "signingSecret",
    "dedupBy",
    "notifyOnResolve",
    "repageOnChange",
}
DEFAULT_NOTIFY_ON_RESOLVE = ["EMAIL", "PUSH_NOTIF"]
_ALIAS = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")

COLUMNS = """id, user_id, name, description, alias, status, token, notification_types, targets,
    total_calls, successful_calls, failed_calls, pending_calls, last_call_at, created_at, updated_at,
    signing_secret IS NOT NULL AS signed, dedup_by, notify_on_resolve, repage_on_change,
    (SELECT count(*) FROM incidents i WHERE i.webhook_id = webhooks.id AND i.status <> 'resolved')
        AS incidents_open"""

INSERT = f"""
INSERT INTO webhooks (id, user_id, name, description, alias, status, token, notification_types, targets,
    signing_secret, dedup_by, notify_on_resolve, repage_on_change)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
RETURNING {COLUMNS}
"""
# LIMIT NULL is no limit: callers inside the engine may read them all.
SELECT_ALL = f"SELECT {COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3"
COUNT_ALL = "SELECT count(*) FROM webhooks WHERE user_id = $1"
SELECT_ONE = f"SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND user_id = $2"
ALIAS_TAKEN = "SELECT 1 FROM webhooks WHERE user_id = $1 AND lower(alias) = lower($2) AND id <> $3"
UPDATE = f"""
UPDATE webhooks SET name = $3, description = $4, alias = $5, status = $6, notification_types = $7,
    targets = $8, signing_secret = CASE WHEN $9 THEN $10 ELSE signing_secret END, dedup_by = $11,
    notify_on_resolve = $12, repage_on_change = $13, updated_at = now()
WHERE id = $1 AND user_id = $2
RETURNING {COLUMNS}
"""
DELETE = "DELETE FROM webhooks WHERE id = $1 AND user_id = $2 RETURNING token"
LAST_TEST = """
SELECT a.id, a.status, a.received_at, a.finished_at,
    coalesce(jsonb_agg(jsonb_build_object(
        'channel', d.channel, 'target', d.target, 'status', d.status, 'attempts', d.attempts,
        'last_error', d.last_error) ORDER BY d.channel, d.target) FILTER (WHERE d.id IS NOT NULL),
        '[]'::jsonb) AS deliveries
FROM alerts a LEFT JOIN deliveries d ON d.alert_id = a.id
WHERE a.webhook_id = $1 AND a.user_id = $2 AND a.is_test
GROUP BY a.id ORDER BY a.received_at DESC LIMIT 1
"""


def new_token() -> str:
    """The secret path of a webhook URL: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def parse_id(raw: str) -> uuid.UUID:
    """A malformed id is simply not found: ids are not a place for validation errors."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("webhook not found", code="WEBHOOK_NOT_FOUND") from None


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 2 else "webhook"


def _types(body: Mapping[str, Any], available: Collection[str]) -> list[str]:
    raw = body.get("notificationTypes")
    if not isinstance(raw, list) or not raw:
        raise ValidationError(
            f"notificationTypes must be a non-empty array of {', '.join(CHANNEL_TYPES)}",
            field="notificationTypes",
        )
    types: list[str] = []
    for i, value in enumerate(raw):
        if value not in CHANNEL_TYPES:
            raise ValidationError(
                f"notificationTypes[{i}] must be one of {', '.join(CHANNEL_TYPES)}",
                field=f"notificationTypes[{i}]",
            )
        if value not in available:
            raise ValidationError(
                f"{value} is not configured on this server (see the README's configuration table)",
                field=f"notificationTypes[{i}]",
                code="CHANNEL_NOT_CONFIGURED",
            )
        if value not in types:
            types.append(value)
    return types


def _targets(raw: object, types: list[str], owner: User) -> dict[str, list[str]]:
    targets = normalise_targets(raw if raw is not None else {}, types)
    for kind in types:
        key = TARGET_KEYS[kind]
        if not targets.get(key):
            fallback = owner.default_target(key)
            if fallback is None:
                raise ValidationError(
                    f"targetChannels.{key} is required for {kind}: your account has no default for it",
                    field=f"targetChannels.{key}",
                )
            targets[key] = [fallback]
    return targets


def _notify_on_resolve(body: Mapping[str, Any]) -> list[str]:
    """Channels that hear of a resolve: any but CALL (a recovery never rings a phone)."""
    raw = body["notifyOnResolve"]
    allowed = [kind for kind in CHANNEL_TYPES if kind != "CALL"]
    if not isinstance(raw, list):
        raise ValidationError(
            f"notifyOnResolve must be an array of {', '.join(allowed)}", field="notifyOnResolve"
        )
    kinds: list[str] = []
    for i, value in enumerate(raw):
        if value not in allowed:
            why = (
                "a resolve never places a call" if value == "CALL" else f"must be one of {', '.join(allowed)}"
            )
            raise ValidationError(f"notifyOnResolve[{i}]: {why}", field="notifyOnResolve")
        if value not in kinds:
            kinds.append(value)
    return kinds


def _flag(body: Mapping[str, Any], name: str, current: bool) -> bool:
    if name not in body:
        return current
    if not isinstance(body[name], bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return body[name]


def _alias(body: Mapping[str, Any]) -> str | None:
    alias = validate.string(body, "alias", max_length=63)
    if alias is None:
        return None
    alias = alias.lower()
    if not _ALIAS.fullmatch(alias):
        raise ValidationError(
            "alias must be 2-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
            field="alias",
        )
    return alias


async def create_webhook(
    conn: db.Connection, owner: User, body: object, available: Collection[str]
) -> asyncpg.Record:
    """Validate a create request and store the webhook with a fresh token."""
    body = validate.require_object(body)
    validate.only_known(body, FIELDS)
    name = validate.string(body, "name", required=True, min_length=3, max_length=100)
    assert name is not None
    description = validate.string(body, "description", max_length=1000, nullable=True)
    alias = _alias(body)
    status = validate.one_of(body, "status", tuple(WebhookStatus), default=WebhookStatus.ACTIVE)
    types = _types(body, available)
    targets = _targets(body.get("targetChannels"), types, owner)
    secret = signing.parse_secret(body.get("signingSecret"))
    dedup_by = validate.one_of(body, "dedupBy", tuple(DedupBy), default=DedupBy.GROUP)
    notify = _notify_on_resolve(body) if "notifyOnResolve" in body else DEFAULT_NOTIFY_ON_RESOLVE
    repage = _flag(body, "repageOnChange", False)
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
        )
        if record is not None:
            return record
        if alias is not None:
            raise Conflict(f"alias '{alias}' is already used by another of your webhooks", code="ALIAS_TAKEN")
    raise Conflict("could not find a free alias; give one explicitly", code="ALIAS_TAKEN")


async def list_webhooks(
    conn: db.Connection, user_id: uuid.UUID, *, limit: int | None = None, offset: int = 0
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ALL, user_id, limit, offset)


async def count_webhooks(conn: db.Connection, user_id: uuid.UUID) -> int:
    return await conn.fetchval(COUNT_ALL, user_id)


async def get_webhook(conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID) -> asyncpg.Record:
    record = await conn.fetchrow(SELECT_ONE, webhook_id, user_id)
    if record is None:
        raise NotFound("webhook not found", code="WEBHOOK_NOT_FOUND")
    return record


async def update_webhook(
    conn: db.Connection,
    redis: Redis,
    owner: User,
    webhook_id: uuid.UUID,
    body: object,
    available: Collection[str],
) -> asyncpg.Record:
    """Apply a partial update; fields left out keep their value. The inbound cache forgets the
    token once the change is committed (``conn`` must not be inside a transaction of the caller's)."""
    body = validate.require_object(body)
    validate.only_known(body, FIELDS)
    async with conn.transaction():
        current = await get_webhook(conn, owner.id, webhook_id)
        name = validate.string(body, "name", min_length=3, max_length=100) or current["name"]
        description = (
            validate.string(body, "description", max_length=1000, nullable=True)
            if "description" in body
            else current["description"]
        )
        alias = _alias(body) or current["alias"]
        if await conn.fetchval(ALIAS_TAKEN, owner.id, alias, webhook_id):
            raise Conflict(f"alias '{alias}' is already used by another of your webhooks", code="ALIAS_TAKEN")
        status = validate.one_of(body, "status", tuple(WebhookStatus)) or current["status"]
        types = (
            _types(body, available) if "notificationTypes" in body else list(current["notification_types"])
        )
        raw_targets = body["targetChannels"] if "targetChannels" in body else current["targets"]
        targets = _targets(raw_targets, types, owner)
        new_secret = "signingSecret" in body
        secret = signing.parse_secret(body["signingSecret"]) if new_secret else None
        dedup_by = validate.one_of(body, "dedupBy", tuple(DedupBy)) or current["dedup_by"]
        notify = _notify_on_resolve(body) if "notifyOnResolve" in body else list(current["notify_on_resolve"])
        values = (
            *(webhook_id, owner.id, name, description, alias, status, types, targets, new_secret, secret),
            *(dedup_by, notify, _flag(body, "repageOnChange", current["repage_on_change"])),
        )
        try:
            record = await conn.fetchrow(UPDATE, *values)
        except asyncpg.UniqueViolationError:  # another request took the alias since ALIAS_TAKEN looked
            raise Conflict(
                f"alias '{alias}' is already used by another of your webhooks", code="ALIAS_TAKEN"
            ) from None
        if current["status"] == WebhookStatus.ACTIVE and status == WebhookStatus.PAUSED:
            await notifications.create(
                conn,
                owner.id,
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
    """Delete the webhook with its alerts and deliveries; its URL answers 404 from then on."""
    token = await conn.fetchval(DELETE, webhook_id, user_id)
    if token is None:
        raise NotFound("webhook not found", code="WEBHOOK_NOT_FOUND")
    await inbound.forget_token(redis, token)


async def last_test(conn: db.Connection, user_id: uuid.UUID, webhook_id: uuid.UUID) -> dict[str, Any] | None:
    record = await conn.fetchrow(LAST_TEST, webhook_id, user_id)
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
