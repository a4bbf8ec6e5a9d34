"""One Redis round trip for an accepted alert: the webhook's rate limit and arq's enqueue in one script.

Counting the hit (engine.ratelimit's fixed window) and queueing the job were two calls and arq's
enqueue four more commands (WATCH, EXISTS, then MULTI/PSETEX/ZADD/EXEC): about five round trips
per alert. The script does both atomically on the server, so it needs no WATCH: a hit over the
limit queues nothing, and a job id already queued or done (a sender's retry of a signed message)
is not queued again, as arq's ``enqueue_job`` answers None for it.

The job is written exactly as arq writes it (``arq.jobs.serialize_job`` with our JSON serializer,
the job key with arq's expiry, the queue's sorted set scored by the enqueue time), so that arq's
worker reads it as its own (tests/test_inbound_enqueue.py reads it back with arq's reader).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.exceptions import NoScriptError

from engine import queue, ratelimit
from engine.clock import queue_ms
from engine.settings import RateLimit

# KEYS: the rate-limit bucket, arq's job key, its result key, the queue.
# ARGV: window ms, limit count, job id, the serialized job, its expiry ms, its score.
# Answers {count, ms left in the window, 1 queued | 0 already there | -1 over the limit}.
ACCEPT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
if count > tonumber(ARGV[2]) then
    return {count, ttl, -1}
end
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then
    return {count, ttl, 0}
end
redis.call('PSETEX', KEYS[2], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[3])
return {count, ttl, 1}
"""
ACCEPT_SHA = hashlib.sha1(ACCEPT_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


@dataclass(frozen=True)
class Outcome:
    verdict: ratelimit.Verdict  # the counted hit
    queued: bool  # False when over the limit, or when the job id was queued before


async def limited_alert(
    redis: ArqRedis,
    bucket: str,
    limit: RateLimit,
    alert_id: str,
    webhook_id: str,
    *,
    body: str,
    content_type: str | None,
    received_at: datetime,
    request_id: str | None = None,
) -> Outcome:
    """Count one hit against ``bucket`` and, within ``limit``, queue the alert as
    ``queue.enqueue_alert`` does, in one round trip."""
    enqueued_ms = queue_ms()
    job = serialize_job(
        queue.PROCESS_ALERT,
        (queue.alert_job(alert_id, webhook_id, body, content_type, received_at, request_id),),
        {},
        None,
        enqueued_ms,
        serializer=queue.serialize,
    )
    keys = (bucket, job_key_prefix + alert_id, result_key_prefix + alert_id, redis.default_queue_name)
    args: tuple[Any, ...] = (
        limit.seconds * 1000,
        limit.count,
        alert_id,
        job,
        redis.expires_extra_ms,
        enqueued_ms,
    )
    try:
        count, pttl, state = await redis.evalsha(ACCEPT_SHA, len(keys), *keys, *args)  # type: ignore[misc]
    except NoScriptError:  # first use on this Redis (or after SCRIPT FLUSH / a restart)
        count, pttl, state = await redis.eval(ACCEPT_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc]
    verdict = ratelimit.Verdict("inbound", limit, int(count), max(int(pttl), 0))
    return Outcome(verdict, queued=int(state) == 1)
