"""Rate limits counted in Redis, so every API process shares one count.

A fixed window per key: the first hit of a window sets its expiry, each hit adds one, and a hit
past ``RateLimit.count`` is refused until the window ends. One Redis round trip per check (a
small Lua script, atomic, and fine on the Redis 6.2 that `monoduty dev` embeds, which lacks
EXPIRE NX). Each limit is checked before the work it guards: the API limit before the caller's
key is looked up, an inbound webhook's limit right after its token is resolved (from the Redis
cache: a token must be known to be counted against), and the ``FailureCounter``s (unknown API
keys, unknown webhook URLs, bad signatures, failed logins) before the work a failure costs.

Answers follow draft-ietf-httpapi-ratelimit-headers-10 (September 2025): the policy and the
current state as Structured Field lists, ``RateLimit-Policy: "api";q=600;w=60`` and
``RateLimit: "api";r=12;t=40`` (r = requests left, t = seconds until the window resets), plus
``Retry-After`` on a 429.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from engine.errors import MonodutyError
from engine.settings import RateLimit

PREFIX = "monoduty:ratelimit:"

# Count the hit; start the window (its expiry) on the first one, or if the expiry was lost.
HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
HIT_SHA = hashlib.sha1(HIT_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


@dataclass(frozen=True)
class Verdict:
    """The outcome of one counted hit."""

    policy: str
    limit: RateLimit
    count: int
    reset_ms: int  # until the window ends

    @property
    def reset(self) -> int:
        """Whole seconds until the window ends, rounded up (what the headers say)."""
        return math.ceil(self.reset_ms / 1000)

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit.count

    @property
    def first_refusal(self) -> bool:
        """True for the first refused hit of a window: where to notify once per burst."""
        return self.count == self.limit.count + 1

    @property
    def remaining(self) -> int:
        return max(self.limit.count - self.count, 0)

    def headers(self) -> dict[str, str]:
        """The draft-10 headers; Retry-After as well when the hit was refused."""
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit.count};w={self.limit.seconds}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(self.reset, 1))
        return headers


class RateLimited(MonodutyError):
    """429: over a rate limit. ``headers`` go on the answer as they are.

    Telling an inbound webhook's owner about a burst is engine/alerts/inbound.py's business (on the
    verdict's ``first_refusal``, before this is raised), so the error carries only the verdict.
    """

    status = 429
    code = "RATE_LIMITED"

    def __init__(self, verdict: Verdict, message: str) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.headers = verdict.headers()


def bucket(kind: str, identity: str) -> str:
    """A Redis key for one limited thing; the identity is hashed (it may be a key or a token)."""
    # surrogateescape: an identity from a header may carry any byte (aiohttp keeps non-UTF-8 that way).
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"{PREFIX}{kind}:{digest}"


async def hit(redis: Redis, key: str, limit: RateLimit, policy: str) -> Verdict:
    """Count one hit against ``key`` and say whether it is within ``limit``."""
    window_ms = limit.seconds * 1000
    try:
        count, pttl = await redis.evalsha(HIT_SHA, 1, key, str(window_ms))  # type: ignore[misc]
    except NoScriptError:  # first use on this Redis (or after SCRIPT FLUSH / a restart)
        count, pttl = await redis.eval(HIT_SCRIPT, 1, key, str(window_ms))  # type: ignore[misc]
    return Verdict(policy, limit, int(count), max(int(pttl), 0))


async def exhausted(redis: Redis, key: str, limit: RateLimit, policy: str) -> Verdict | None:
    """The refusing verdict if ``key``'s window is used up, without counting a hit; else None."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.pttl(key)
        count, pttl = await pipe.execute()
    if count is None or int(count) < limit.count:
        return None
    return Verdict(policy, limit, int(count) + 1, max(int(pttl), 1000))


@dataclass(frozen=True)
class FailureCounter:
    """Failures of one kind per identity (a client address; an email and address for logins),
    checked before the work they guard (a database lookup, reading a body, a password hash) and
    counted only when that work fails, so that failing cannot buy unlimited work.

    After ``limit.count`` failures in a window the next try is refused until the window ends. The
    window starts at the first failure, like every rate limit here; with ``sliding`` each failure
    starts it again, so that hammering keeps the door shut (logins: "until 15 minutes pass without
    a failure"). A success may ``clear`` the count.
    """

    kind: str  # the Redis bucket's kind and the policy its verdicts name
    limit: RateLimit
    sliding: bool = False

    def key(self, identity: str) -> str:
        """The Redis key counting ``identity``'s failures."""
        return bucket(self.kind, identity)

    async def refusal(self, redis: Redis, identity: str) -> Verdict | None:
        """The refusing verdict while ``identity`` has used up its failures, else None; counts nothing."""
        return await exhausted(redis, self.key(identity), self.limit, self.kind)

    async def failed(self, redis: Redis, identity: str) -> None:
        """Count one failure of ``identity``."""
        if not self.sliding:
            await hit(redis, self.key(identity), self.limit, self.kind)
            return
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(self.key(identity))
            pipe.expire(self.key(identity), self.limit.seconds)
            await pipe.execute()

    async def clear(self, redis: Redis, identity: str) -> None:
        await redis.delete(self.key(identity))
