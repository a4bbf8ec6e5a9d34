"""A ping: ``<public url>/ping/<token>`` (``/start``, ``/fail``), by GET or POST, from a job's last line.

Its work is small and mostly Redis:

1. the token names the heartbeat through a Redis cache, keyed by a hash of the token, as a webhook
   URL's does (engine.alerts.inbound): unknown tokens are cached briefly and count against the
   address's budget of unknown URLs, which it shares with the webhook URLs;
2. a ping of the kind the heartbeat's last stored ping had, within a second of it, is counted in
   Redis and not stored: a ping loop costs no database write per request. Its count joins the
   heartbeat's ``ping_count`` with the next stored ping;
3. any other ping is stored: the heartbeat's row changes (engine.heartbeats.state) and the ping
   is kept with its source address, user agent and the first 10 KiB of its body (its log), in the
   heartbeat's last 100. A /fail, or the first good ping after one went down, raises its alert in
   that transaction (engine.heartbeats.raised), so the incident opens, or resolves, at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from engine import ratelimit
from engine.alerts.inbound import CACHE_SECONDS, MISS_SECONDS, refuse_guessing
from engine.clock import Clock
from engine.errors import NotFound
from engine.heartbeats import PingKind, raised, store
from engine.heartbeats.state import State, on_ping, timing_of
from engine.settings import RateLimit
from engine.webhooks import WebhookStatus

log = logging.getLogger("monoduty.heartbeats")

TOKEN_PREFIX = "monoduty:heartbeat-token:"  # noqa: S105 - + a hash of the token
LAST_PREFIX = "monoduty:heartbeat-last:"  # "<kind>:<ms>": a heartbeat's last stored ping
COUNTED_PREFIX = "monoduty:heartbeat-counted:"  # pings counted since, not stored
SAME_SECOND_MS = 1000
# The time compared is the clock's (engine.clock), so the key only has to outlive a second of it.
LAST_KEPT_MS = 60_000
COUNTED_SECONDS = 86400
MAX_BODY = 10 * 1024
MAX_USER_AGENT = 300
MAX_ADDRESS = 100  # a proxy's X-Forwarded-For entry is whatever it says
KEPT = 100  # pings kept per heartbeat

SELECT_BY_TOKEN = "SELECT id FROM heartbeats WHERE token = $1"  # noqa: S105
INSERT_PING = """
INSERT INTO heartbeat_pings (heartbeat_id, kind, received_at, method, source_ip, user_agent, body)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
TRIM = """
DELETE FROM heartbeat_pings WHERE heartbeat_id = $1 AND id <= (
    SELECT id FROM heartbeat_pings WHERE heartbeat_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)
"""

# -1: a repeat within the second of the last stored ping of its kind, counted; else store it, and
# the answer is how many were counted since the last one stored. ARGV: kind, now (ms), the window,
# how long to keep the key (ms), how long to keep the count (s).
SAME_SECOND_SCRIPT = """
local last = redis.call('GET', KEYS[1])
if last then
    local sep = string.find(last, ':', 1, true)
    local since = tonumber(ARGV[2]) - tonumber(string.sub(last, sep + 1))
    if string.sub(last, 1, sep - 1) == ARGV[1] and since >= 0 and since < tonumber(ARGV[3]) then
        redis.call('INCR', KEYS[2])
        redis.call('EXPIRE', KEYS[2], ARGV[5])
        return -1
    end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[4])
local counted = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
return tonumber(counted or '0')
"""
SAME_SECOND_SHA = hashlib.sha1(SAME_SECOND_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts so

BodyReader = Callable[[], Awaitable[bytes]]


def _token_key(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:40]


async def resolve_token(
    redis: Redis, pool: asyncpg.Pool, token: str, *, client: str | None, limit: RateLimit | None
) -> uuid.UUID | None:
    """The heartbeat behind ``token`` (None if there is none), from the cache when it can be."""
    key = _token_key(token)
    cached = await redis.get(key)
    if cached is not None:
        value = cached.decode() if isinstance(cached, bytes) else str(cached)
        return uuid.UUID(value) if value != "null" else None
    await refuse_guessing(redis, client, limit)
    async with pool.acquire() as conn:
        heartbeat_id = await conn.fetchval(SELECT_BY_TOKEN, token)
    if heartbeat_id is None:
        await redis.set(key, "null", ex=MISS_SECONDS)
        if client is not None and limit is not None:
            await ratelimit.FailureCounter("token-failures", limit).failed(redis, client)
        return None
    await redis.set(key, str(heartbeat_id), ex=CACHE_SECONDS)
    assert isinstance(heartbeat_id, uuid.UUID)
    return heartbeat_id


async def forget_token(redis: Redis, token: str) -> None:
    await redis.delete(_token_key(token))


async def _store_or_count(redis: Redis, heartbeat_id: uuid.UUID, kind: PingKind, now: datetime) -> int | None:
    """None: counted, not stored; else store it, with this many counted before it."""
    keys = (LAST_PREFIX + str(heartbeat_id), COUNTED_PREFIX + str(heartbeat_id))
    now_ms = int(now.timestamp() * 1000)
    args = (kind.value, str(now_ms), str(SAME_SECOND_MS), str(LAST_KEPT_MS), str(COUNTED_SECONDS))
    try:
        answer = await redis.evalsha(SAME_SECOND_SHA, 2, *keys, *args)  # type: ignore[misc]
    except NoScriptError:  # first use on this Redis (or after SCRIPT FLUSH / a restart)
        answer = await redis.eval(SAME_SECOND_SCRIPT, 2, *keys, *args)  # type: ignore[misc]
    return None if int(answer) < 0 else int(answer)


async def counted(redis: Redis, heartbeat_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Pings counted in Redis and not in ``ping_count`` yet, per heartbeat."""
    if not heartbeat_ids:
        return {}
    values = await redis.mget([COUNTED_PREFIX + str(i) for i in heartbeat_ids])
    return {i: int(v) for i, v in zip(heartbeat_ids, values, strict=True) if v is not None}


def _text(raw: str | None, limit: int) -> str | None:
    """What PostgreSQL can store of a header: no NUL, at most ``limit`` characters."""
    return raw.replace("\x00", "\ufffd")[:limit] if raw else None


async def record_ping(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    clock: Clock,
    token: str,
    kind: PingKind,
    read_body: BodyReader,
    *,
    method: str,
    client: str | None,
    user_agent: str | None,
    limit: RateLimit | None,
) -> bool:
    """Take one ping; True if it was stored, False if counted only. NotFound for an unknown token.

    ``read_body`` is called only for a ping that is stored (and should return at most MAX_BODY bytes)."""
    heartbeat_id = await resolve_token(redis, pool, token, client=client, limit=limit)
    if heartbeat_id is None:
        raise NotFound("no heartbeat at this URL", code="HEARTBEAT_NOT_FOUND")
    before = await _store_or_count(redis, heartbeat_id, kind, clock.now())
    if before is None:
        return False
    try:
        body = (await read_body())[:MAX_BODY].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        found, alert_id = await _store(
            pool, clock, heartbeat_id, kind, before, body, method, client, user_agent
        )
    except Exception:
        # Not stored after all: a retry within the second must be stored, not counted.
        with contextlib.suppress(Exception):
            await redis.delete(LAST_PREFIX + str(heartbeat_id))
        raise
    if not found:  # deleted since the cache learnt its token
        await forget_token(redis, token)
        await redis.delete(LAST_PREFIX + str(heartbeat_id))
        raise NotFound("no heartbeat at this URL", code="HEARTBEAT_NOT_FOUND")
    if alert_id is not None:
        try:
            await raised.queue_owed(pool, redis, clock, [alert_id])
        except Exception:  # the sweep queues what is still owed; the ping itself is stored
            log.exception("could not queue a heartbeat alert's deliveries", extra={"alert_id": str(alert_id)})
    return True


async def _store(
    pool: asyncpg.Pool,
    clock: Clock,
    heartbeat_id: uuid.UUID,
    kind: PingKind,
    before: int,
    body: str,
    method: str,
    client: str | None,
    user_agent: str | None,
) -> tuple[bool, uuid.UUID | None]:
    """Store the ping and the heartbeat's change: whether the heartbeat is there, and the alert it raised."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock(conn, heartbeat_id)
        if row is None:
            return False, None
        now = clock.now()
        quiet = row["webhook_status"] != WebhookStatus.ACTIVE
        change = on_ping(timing_of(row), State.of(row), kind, now, quiet=quiet)
        alert_id = await raised.raise_alert(conn, row, change, now, log_text=body)
        await store.save(conn, heartbeat_id, change.state, pings=before + 1)
        await conn.execute(
            INSERT_PING,
            heartbeat_id,
            kind.value,
            now,
            method,
            _text(client, MAX_ADDRESS),
            _text(user_agent, MAX_USER_AGENT),
            body,
        )
        await conn.execute(TRIM, heartbeat_id, KEPT)
    return True, alert_id
