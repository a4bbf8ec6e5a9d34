"""Who is alive: processes (workers, API servers) announce themselves in Redis and are counted.

arq writes one health-check key per queue, and several workers overwrite each other's, so it can
say "some worker was alive lately" but not how many. Each process therefore also beats here:

    ZADD monoduty:<kind>:seen <unix time> <host>:<pid>       last beat of each process
    HSET monoduty:<kind>:info <host>:<pid> <json>            what it says about itself

A process is alive while its last beat is younger than ``ttl`` seconds; a clean stop removes it at
once, a crashed one ages out. Both keys are readable with plain ``redis-cli``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from redis.asyncio import Redis

WORKERS = "workers"
API = "api"
# A process beats every ~30 s at most; two missed beats and it counts as gone.
DEFAULT_TTL = 70.0


def _seen_key(kind: str) -> str:
    return f"monoduty:{kind}:seen"


def _info_key(kind: str) -> str:
    return f"monoduty:{kind}:info"


def this_process() -> str:
    """The member name of the calling process: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(
    redis: Redis, kind: str, member: str, info: dict[str, Any], *, ttl: float = DEFAULT_TTL
) -> None:
    """Say ``member`` is alive now, and forget members that stopped beating long ago."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(_seen_key(kind), {member: now})
        pipe.hset(_info_key(kind), member, json.dumps(info))
        pipe.zrangebyscore(_seen_key(kind), "-inf", now - 10 * ttl)
        results = await pipe.execute()
    stale = results[2]
    if stale:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zrem(_seen_key(kind), *stale)
            pipe.hdel(_info_key(kind), *stale)
            await pipe.execute()


async def leave(redis: Redis, kind: str, member: str) -> None:
    """A clean stop: ``member`` is no longer counted."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(_seen_key(kind), member)
        pipe.hdel(_info_key(kind), member)
        await pipe.execute()


async def count_alive(redis: Redis, kind: str, *, ttl: float = DEFAULT_TTL) -> int:
    return int(await redis.zcount(_seen_key(kind), time.time() - ttl, "+inf"))


async def alive(redis: Redis, kind: str, *, ttl: float = DEFAULT_TTL) -> dict[str, dict[str, Any]]:
    """Every live member with what it said about itself, plus ``last_seen`` (unix time)."""
    seen = await redis.zrangebyscore(_seen_key(kind), time.time() - ttl, "+inf", withscores=True)
    if not seen:
        return {}
    members = [m.decode() if isinstance(m, bytes) else m for m, _ in seen]
    infos = await redis.hmget(_info_key(kind), members)  # type: ignore[misc]
    result: dict[str, dict[str, Any]] = {}
    for member, (_, score), raw in zip(members, seen, infos, strict=True):
        info = json.loads(raw) if raw else {}
        result[member] = {**info, "last_seen": score}
    return result
