"""Accepting an inbound alert: resolve the token, check the webhook, enqueue. No Postgres per call.

Tokens are resolved through the API process's own cache (engine.local_cache: no round trip), then
a Redis cache keyed by a hash of the token (so ``redis-cli KEYS`` never shows a secret). Any
change to a webhook calls ``forget_token``, which empties both in every process (pub/sub); entries
also expire, and unknown tokens are cached briefly in Redis too so that guessing does not reach
Postgres (never in the process: a guesser would fill it).

Checks, in order, each before any work, and the body is read only once it is needed:

1. known token (404; unknown ones count per client address, 429 past the inbound limit);
2. for a signed webhook, the signature (401). Bad signatures count per client address, checked
   before the body is read (429 past the inbound limit), and never against the webhook: a
   stranger who knows the URL cannot use up its limit and silence it;
3. a Standard Webhooks ``webhook-id`` seen before: a sender's retry, answered with the first
   alert's id and not queued again;
4. the sender's rate limit per token (429 ``RateLimited``; the first refusal of a window tells
   the owner, once per burst, in the in-app inbox), then not paused (409). Only then is the
   alert enqueued. At an active webhook the hit is counted and the job queued by one script, in
   one round trip (engine.alerts.enqueue); the body is read just before it (the drop-in APIs,
   which check their bodies, and paused webhooks count the hit first, as a separate call).

A body over the limit (413) at a known, active webhook is also told to its owner: a small job
(who sent how much, no body) becomes the "payload too large" incident (engine.alerts.refused).

The cache entry carries the signing secret so that checking a signature needs no Postgres.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from engine import local_cache, notifications, queue, ratelimit, replicated
from engine.alerts import enqueue, refused, signing
from engine.errors import MonodutyError, NotFound, PayloadTooLarge
from engine.incidents.keys import sender_key
from engine.settings import RateLimit

log = logging.getLogger("monoduty.inbound")

CACHE_PREFIX = "monoduty:token:"
# Standard Webhooks messages accepted lately, by webhook and webhook-id: their alert's id.
MESSAGE_PREFIX = "monoduty:webhook-msg:"
# Twice the signature tolerance (a timestamp may be that far in the future too): the usual quick
# retries are answered from here; a later one finds the same alert id by _alert_id.
MESSAGE_SECONDS = 2 * signing.TOLERANCE
MESSAGE_NAMESPACE = uuid.UUID("7d0e4a52-54c3-4c8e-9f3e-2f5c1d3b8a61")
BodyReader = Callable[[], Awaitable[bytes]]
# Turns a read (and verified) body into the one queued: the drop-in PagerDuty and Opsgenie APIs
# check theirs here and raise their own 400/422, after the token, signature, limit and pause.
BodyPreparer = Callable[[bytes], bytes]
CACHE_SECONDS = 3600
# What a webhook token looks like (api/inbound.py's route pattern): anything else names no webhook.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,100}")
MISS_SECONDS = 60

# Each API process's own cache (engine.local_cache): an accepted alert then costs one round trip.
LOCAL_SECONDS = 10.0

# The storage time (Redis, and PostgreSQL on a token cache miss) one inbound call may spend in all,
# its body's reading aside. Each Redis command is bounded (engine.queue: 1 s to connect, 1.5 s a
# command), but a call makes up to four and a new connection's handshake adds its own: with Redis
# frozen one answer took 2.1 s. The README promises a sender 202 or 503 + Retry-After within 2 s;
# one budget for the whole call keeps that by construction, with room for a loaded event loop.
STORAGE_BUDGET_SECONDS = 1.0

SELECT_BY_TOKEN = "SELECT id, user_id, status, signing_secret FROM webhooks WHERE token = $1"  # noqa: S105


@dataclass(frozen=True)
class InboundWebhook:
    id: str
    user_id: str
    status: str
    signing_secret: str | None = field(default=None, repr=False)


TokenCache = local_cache.LocalCache[InboundWebhook]


def token_cache() -> TokenCache:
    return local_cache.LocalCache("webhook tokens", LOCAL_SECONDS)


def cache_key(token: str) -> str:
    return CACHE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:40]


async def resolve_token(
    redis: Redis,
    pool: asyncpg.Pool,
    token: str,
    *,
    client: str | None = None,
    limit: RateLimit | None = None,
    tokens: TokenCache | None = None,
) -> InboundWebhook | None:
    """The webhook behind ``token`` (None if there is none), from the caches when it can be:
    this process's ``tokens`` (no round trip), else Redis's.

    With ``client`` and ``limit``, unknown tokens count per client address and an address past
    ``limit`` gets 429 before the database: guessing URLs cannot buy unlimited lookups. Only a
    cache miss pays for this check; a known, cached token costs one Redis read as before.
    """
    key = cache_key(token)
    generation = 0
    if tokens is not None:
        found = tokens.get(key)
        if not isinstance(found, local_cache.Miss):
            return found
        generation = tokens.generation
    cached = await redis.get(key)
    if cached is not None:
        data = json.loads(cached)
        if not data:
            return None
        webhook = InboundWebhook(**data)
        if tokens is not None:
            tokens.put(key, webhook, (token_tag(key),), generation)
        return webhook
    failures = ratelimit.FailureCounter("token-failures", limit) if client is not None and limit else None
    await refuse_guessing(redis, client, limit)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SELECT_BY_TOKEN, token)
    if row is None:
        await redis.set(key, "null", ex=MISS_SECONDS)
        if failures is not None and client is not None:
            await failures.failed(redis, client)
        return None
    webhook = InboundWebhook(
        id=str(row["id"]),
        user_id=str(row["user_id"]),
        status=row["status"],
        signing_secret=row["signing_secret"],
    )
    if tokens is None or tokens.generation == generation:
        # Not if the webhook changed while Postgres was asked: that answer may be the old one.
        await redis.set(key, json.dumps(webhook.__dict__), ex=CACHE_SECONDS)
    if tokens is not None:
        tokens.put(key, webhook, (token_tag(key),), generation)
    return webhook


async def refuse_guessing(redis: Redis, client: str | None, limit: RateLimit | None) -> None:
    """429 for an address that has used up its unknown-token failures, checked before a body that
    names its token (PagerDuty's routing_key) is read: a guesser is not read 1 MiB at a time."""
    if client is None or limit is None:
        return
    async with asyncio.timeout(STORAGE_BUDGET_SECONDS):  # as accept_alert's storage work is
        spent = await ratelimit.FailureCounter("token-failures", limit).refusal(redis, client)
    if spent is not None:
        raise ratelimit.RateLimited(spent, "too many unknown webhook URLs from this address; retry later")


def token_tag(key: str) -> str:
    """What a token's change is published as: its cache key's hash, never the token."""
    return "webhook-token:" + key.removeprefix(CACHE_PREFIX)


async def forget_token(redis: Redis, token: str) -> None:
    """After any change to the webhook behind ``token``: every process's caches forget it."""
    key = cache_key(token)
    await local_cache.forget(redis, token_tag(key), delete=(key,))


async def _notify_limited(
    redis: Redis, pool: asyncpg.Pool, webhook: InboundWebhook, verdict: ratelimit.Verdict
) -> None:
    """Tell the owner once per burst; the sender's 429 must not depend on this succeeding.

    The burst is the rest of the limit's window: its guard must end with the window, or the next
    window's burst (starting sooner than ``limit.seconds`` after this refusal) goes unreported.
    """
    limit = verdict.limit
    try:
        await notifications.notify_once_per_burst(
            redis,
            pool,
            webhook.user_id,
            webhook.id,
            notifications.NotificationKind.RATE_LIMITED,
            "Webhook hit its rate limit",
            f"Alerts beyond {limit.count} per {limit.seconds} s are being refused with 429.",
            verdict.reset_ms / 1000,
        )
    except Exception:
        log.exception("could not record the rate-limit notification", extra={"webhook_id": webhook.id})


def _telling_refusals(
    redis: Redis,
    webhook: InboundWebhook,
    read_body: BodyReader,
    headers: Mapping[str, str],
    limit: RateLimit | None,
    client: str | None,
    request_id: str | None,
) -> BodyReader:
    """``read_body``, except that a body refused as too large is also told to the owner."""

    async def read() -> bytes:
        try:
            return await read_body()
        except PayloadTooLarge as exc:
            await _tell_refusal(redis, webhook, headers, limit, client, request_id, exc.limit)
            raise

    return read


async def _tell_refusal(
    redis: Redis,
    webhook: InboundWebhook,
    headers: Mapping[str, str],
    limit: RateLimit | None,
    client: str | None,
    request_id: str | None,
    body_limit: int,
) -> None:
    """Queue the "payload too large" alert (engine.alerts.refused); the sender's 413 stands whatever
    happens here. A paused webhook pages nobody; refusals count against their own window of the
    inbound limit, so a sender cannot queue more of them than it could queue alerts."""
    if webhook.status != "ACTIVE":
        return
    extra = {"webhook_id": webhook.id, "outcome": "too_large", "request_id": request_id}
    try:
        if limit is not None:
            verdict = await ratelimit.hit(redis, ratelimit.bucket("refused", webhook.id), limit, "refused")
            if not verdict.allowed:
                return
        length = headers.get("Content-Length", "")
        await queue.enqueue_refusal(
            redis,  # type: ignore[arg-type]
            str(uuid.uuid4()),
            webhook.id,
            sender=refused.sender_of(headers, client),
            size=int(length) if length.isdecimal() else None,
            limit=body_limit,
            received_at=datetime.now(UTC),
            request_id=request_id,
        )
        log.warning("inbound alert refused: body too large; the owner is told", extra=extra)
    except Exception:
        log.exception("could not queue the payload-too-large alert", extra=extra)


@dataclass(frozen=True)
class Accepted:
    alert_id: str
    queued: bool  # False when it was a repeat of an alert queued before
    dedup_key: str | None = None  # the sender's own key, echoed in the 202


def _message_key(webhook_id: str, msg_id: str) -> str:
    return f"{MESSAGE_PREFIX}{webhook_id}:{hashlib.sha256(msg_id.encode()).hexdigest()[:40]}"


def _alert_id(webhook: InboundWebhook, msg_id: str | None) -> str:
    """A new alert's id. A signed message's id follows from its webhook-id, so that two deliveries
    of one message (a retry, or two at once) name one alert: arq queues one job per id, and
    process_alert stores one alert per id, long after the record of the message has expired."""
    if msg_id is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{webhook.id}:{msg_id}"))


async def _verified(
    redis: Redis,
    webhook: InboundWebhook,
    read_body: BodyReader,
    headers: Mapping[str, str],
    *,
    limit: RateLimit | None,
    client: str | None,
    request_id: str | None,
) -> tuple[bytes, str | None]:
    """The body of a correctly signed request and its webhook-id, or 401 (429 for an address
    that sent too many bad signatures in the window, before reading anything)."""
    assert webhook.signing_secret is not None
    address = client or "unknown"
    failures = ratelimit.FailureCounter("signature-failures", limit) if limit is not None else None
    if failures is not None:
        spent = await failures.refusal(redis, address)
        if spent is not None:
            raise ratelimit.RateLimited(
                spent, "too many badly signed requests from this address; retry later"
            )
    body = await read_body()
    try:
        return body, signing.verify(webhook.signing_secret, headers, body)
    except signing.SignatureRejected as exc:
        extra = {"webhook_id": webhook.id, "outcome": exc.code, "request_id": request_id}
        log.info("inbound alert refused: bad signature", extra=extra)
        if failures is not None:
            await failures.failed(redis, address)
        raise


async def _check_limit(
    redis: Redis, pool: asyncpg.Pool, webhook: InboundWebhook, token: str, limit: RateLimit
) -> None:
    verdict = await ratelimit.hit(redis, ratelimit.bucket("inbound", token), limit, "inbound")
    await _refuse_over_limit(redis, pool, webhook, verdict)


async def _refuse_over_limit(
    redis: Redis, pool: asyncpg.Pool, webhook: InboundWebhook, verdict: ratelimit.Verdict
) -> None:
    """429 for a hit over the limit (the owner told of the first refusal of a window); else nothing."""
    if verdict.allowed:
        return
    if verdict.first_refusal:
        log.warning("inbound rate limit reached", extra={"webhook_id": webhook.id, "outcome": "limited"})
        await _notify_limited(redis, pool, webhook, verdict)
    limit = verdict.limit
    raise ratelimit.RateLimited(
        verdict, f"this webhook accepts at most {limit.count} alerts per {limit.seconds} seconds"
    )


async def accept_alert(
    redis: Redis,
    pool: asyncpg.Pool,
    token: str,
    read_body: BodyReader,
    content_type: str | None,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    limit: RateLimit | None = None,
    client: str | None = None,
    prepare: BodyPreparer | None = None,
    tokens: TokenCache | None = None,
) -> Accepted:
    """Queue one inbound call and say under which alert id (``_accept_alert``), its storage work
    bounded by ``STORAGE_BUDGET_SECONDS`` in all: past it, a TimeoutError (the API's 503)."""
    async with asyncio.timeout(STORAGE_BUDGET_SECONDS) as budget:
        return await _accept_alert(
            redis,
            pool,
            token,
            _outside_budget(budget, read_body),
            content_type,
            request_id=request_id,
            headers=headers,
            limit=limit,
            client=client,
            prepare=prepare,
            tokens=tokens,
        )


def _outside_budget(budget: asyncio.Timeout, read_body: BodyReader) -> BodyReader:
    """``read_body`` with the budget paused while it reads: a slow sender's upload is its own
    business (the body's limits bound it), not a storage service being away."""

    async def read() -> bytes:
        loop = asyncio.get_running_loop()
        when = budget.when()
        left = None if when is None else when - loop.time()
        budget.reschedule(None)
        try:
            return await read_body()
        finally:
            budget.reschedule(None if left is None else loop.time() + left)

    return read


async def _accept_alert(
    redis: Redis,
    pool: asyncpg.Pool,
    token: str,
    read_body: BodyReader,
    content_type: str | None,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    limit: RateLimit | None = None,
    client: str | None = None,
    prepare: BodyPreparer | None = None,
    tokens: TokenCache | None = None,
) -> Accepted:
    """Queue one inbound call and say under which alert id; refuse unknown tokens, bad
    signatures, senders over ``limit`` and paused webhooks (nothing is enqueued then).

    ``read_body`` is called once, when the checks that need no body have passed; ``prepare``, if
    given, then turns it into the body queued (a signature is checked on the body as sent)."""
    webhook = await resolve_token(redis, pool, token, client=client, limit=limit, tokens=tokens)
    if webhook is None:
        raise NotFound("no webhook at this URL", code="WEBHOOK_NOT_FOUND")
    read_body = _telling_refusals(redis, webhook, read_body, headers or {}, limit, client, request_id)
    body: bytes | None = None
    msg_id: str | None = None
    if webhook.signing_secret is not None:
        body, msg_id = await _verified(
            redis, webhook, read_body, headers or {}, limit=limit, client=client, request_id=request_id
        )
        if msg_id is not None:
            first = await redis.get(_message_key(webhook.id, msg_id))
            if first is not None:
                log.info(
                    "inbound alert repeated: answered with the first alert id",
                    extra={"webhook_id": webhook.id},
                )
                return Accepted(first.decode() if isinstance(first, bytes) else str(first), queued=False)
    if limit is not None and webhook.status == "ACTIVE" and prepare is None:
        # The common case in one round trip: the limit counted and the job queued by one script
        # (engine.alerts.enqueue). The body is read first; it is bounded by the inbound limit.
        if body is None:
            body = await read_body()
        alert_id = _alert_id(webhook, msg_id)
        replica = replicated.expects_replica(redis)  # type: ignore[arg-type]  # as of before the write
        outcome = await enqueue.limited_alert(
            redis,  # type: ignore[arg-type]
            ratelimit.bucket("inbound", token),
            limit,
            alert_id,
            webhook.id,
            body=body.decode("utf-8", errors="replace"),
            content_type=content_type,
            received_at=datetime.now(UTC),
            request_id=request_id,
        )
        await _refuse_over_limit(redis, pool, webhook, outcome.verdict)
        return await _queued(redis, webhook, msg_id, alert_id, outcome.queued, body, replica)
    if limit is not None:
        await _check_limit(redis, pool, webhook, token, limit)
    if webhook.status != "ACTIVE":
        raise MonodutyError(
            "this webhook is paused and refuses alerts; resume it with PATCH status ACTIVE",
            code="WEBHOOK_PAUSED",
            status=409,
        )
    if body is None:
        body = await read_body()
    if prepare is not None:
        body = prepare(body)
    alert_id = _alert_id(webhook, msg_id)
    replica = replicated.expects_replica(redis)  # type: ignore[arg-type]
    queued = await queue.enqueue_alert(
        redis,  # type: ignore[arg-type]
        alert_id,
        webhook.id,
        body=body.decode("utf-8", errors="replace"),
        content_type=content_type,
        received_at=datetime.now(UTC),
        request_id=request_id,
    )
    # queue.enqueue_alert confirms the job exists (arq's None can also mean a write lost at EXEC).
    return await _queued(redis, webhook, msg_id, alert_id, queued, body, replica)


async def _queued(
    redis: Redis,
    webhook: InboundWebhook,
    msg_id: str | None,
    alert_id: str,
    queued: bool,
    body: bytes,
    replica: bool,
) -> Accepted:
    if msg_id is not None:
        # Only now, with the alert safely queued: a failure before this leaves the sender's retry
        # free to queue it. Two deliveries at once both get here with one alert id and one job.
        await redis.set(_message_key(webhook.id, msg_id), alert_id, ex=MESSAGE_SECONDS)
    await replicated.confirm(redis, alert_id, replica)  # type: ignore[arg-type]  # behind Sentinel
    return Accepted(alert_id, queued=queued, dedup_key=sender_key(body))
