"""Accepting an inbound alert: resolve the token, check the webhook, enqueue. No Postgres per call.

Tokens are resolved through a Redis cache keyed by a hash of the token (so ``redis-cli KEYS``
never shows a secret). Any change to a webhook calls ``forget_token``; entries also expire, and
unknown tokens are cached briefly too so that guessing does not reach Postgres.

Checks, in order, each before any work: known token (404), the sender's rate limit per token
(429 ``RateLimited``, carrying the webhook and owner for a once-per-burst notice), not paused
(409), signature when the webhook has a signing secret (401). Only then is the alert enqueued.
The cache entry carries the signing secret so that checking a signature needs no Postgres.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from engine import notifications, queue, ratelimit, signing
from engine.errors import MonodutyError, NotFound
from engine.settings import RateLimit

log = logging.getLogger("monoduty.inbound")

CACHE_PREFIX = "monoduty:token:"
CACHE_SECONDS = 3600
MISS_SECONDS = 60

SELECT_BY_TOKEN = "SELECT id, user_id, status, signing_secret FROM webhooks WHERE token = $1"  # noqa: S105


@dataclass(frozen=True)
class InboundWebhook:
    id: str
    user_id: str
    status: str
    signing_secret: str | None = field(default=None, repr=False)


def _cache_key(token: str) -> str:
    return CACHE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:40]


async def resolve_token(
    redis: Redis,
    pool: asyncpg.Pool,
    token: str,
    *,
    client: str | None = None,
    limit: RateLimit | None = None,
) -> InboundWebhook | None:
    """The webhook behind ``token`` (None if there is none), from the cache when it can be.

    With ``client`` and ``limit``, unknown tokens count per client address and an address past
    ``limit`` gets 429 before the database: guessing URLs cannot buy unlimited lookups. Only a
    cache miss pays for this check; a known, cached token costs one Redis read as before.
    """
    key = _cache_key(token)
    cached = await redis.get(key)
    if cached is not None:
        data = json.loads(cached)
        return InboundWebhook(**data) if data else None
    failures = ratelimit.bucket("token-failures", client) if client is not None and limit else None
    if failures is not None and limit is not None:
        spent = await ratelimit.exhausted(redis, failures, limit, "token-failures")
        if spent is not None:
            raise ratelimit.RateLimited(spent, "too many unknown webhook URLs from this address; retry later")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SELECT_BY_TOKEN, token)
    if row is None:
        await redis.set(key, "null", ex=MISS_SECONDS)
        if failures is not None and limit is not None:
            await ratelimit.hit(redis, failures, limit, "token-failures")
        return None
    webhook = InboundWebhook(
        id=str(row["id"]),
        user_id=str(row["user_id"]),
        status=row["status"],
        signing_secret=row["signing_secret"],
    )
    await redis.set(key, json.dumps(webhook.__dict__), ex=CACHE_SECONDS)
    return webhook


async def forget_token(redis: Redis, token: str) -> None:
    await redis.delete(_cache_key(token))


async def _notify_limited(
    redis: Redis, pool: asyncpg.Pool, webhook: InboundWebhook, limit: RateLimit
) -> None:
    """Tell the owner once per burst; the sender's 429 must not depend on this succeeding."""
    try:
        await notifications.notify_once_per_burst(
            redis,
            pool,
            webhook.user_id,
            webhook.id,
            notifications.NotificationKind.RATE_LIMITED,
            "Webhook hit its rate limit",
            f"Alerts beyond {limit.count} per {limit.seconds} s are being refused with 429.",
            limit.seconds,
        )
    except Exception:
        log.exception("could not record the rate-limit notification", extra={"webhook_id": webhook.id})


async def accept_alert(
    redis: Redis,
    pool: asyncpg.Pool,
    token: str,
    body: bytes,
    content_type: str | None,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    limit: RateLimit | None = None,
    client: str | None = None,
) -> str:
    """Queue one inbound call and return its alert id; refuse unknown tokens, senders over
    ``limit``, paused webhooks and bad signatures (nothing is enqueued then)."""
    webhook = await resolve_token(redis, pool, token, client=client, limit=limit)
    if webhook is None:
        raise NotFound("no webhook at this URL", code="WEBHOOK_NOT_FOUND")
    if limit is not None:
        verdict = await ratelimit.hit(redis, ratelimit.bucket("inbound", token), limit, "inbound")
        if not verdict.allowed:
            if verdict.first_refusal:
                log.warning(
                    "inbound rate limit reached", extra={"webhook_id": webhook.id, "outcome": "limited"}
                )
                await _notify_limited(redis, pool, webhook, limit)
            raise ratelimit.RateLimited(
                verdict,
                f"this webhook accepts at most {limit.count} alerts per {limit.seconds} seconds",
                webhook_id=webhook.id,
                user_id=webhook.user_id,
            )
    if webhook.status != "ACTIVE":
        raise MonodutyError(
            "this webhook is paused and refuses alerts; resume it with PATCH status ACTIVE",
            code="WEBHOOK_PAUSED",
            status=409,
        )
    if webhook.signing_secret is not None:
        try:
            await signing.verify(redis, webhook.id, webhook.signing_secret, headers or {}, body)
        except signing.SignatureRejected as exc:
            extra = {"webhook_id": webhook.id, "outcome": exc.code, "request_id": request_id}
            log.info("inbound alert refused: bad signature", extra=extra)
            raise
    alert_id = str(uuid.uuid4())
    await queue.enqueue_alert(
        redis,  # type: ignore[arg-type]
        alert_id,
        webhook.id,
        body=body.decode("utf-8", errors="replace"),
        content_type=content_type,
        received_at=datetime.now(UTC),
        request_id=request_id,
    )
    return alert_id
