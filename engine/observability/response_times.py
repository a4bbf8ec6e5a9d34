"""API response times across every API process, kept in Redis as small histograms.

Each process counts durations in memory (no Redis call on the request path) and flushes about
once a second, in one pipelined call, into 10-second buckets:

    HASH monoduty:response-time:<group>:<bucket start, unix s>
         n -> requests, sum -> total ms, <bin> -> requests in that bin     (expires after the window)

Bins are geometric (each ~9 % wider than the last, from 0.1 ms), so a percentile read from the
merged histogram is within ~5 % of the exact value while memory stays bounded whatever the
traffic. Groups: ``api`` (``/api/*``) and ``inbound`` (alerts posted to a webhook URL); probes
(``/healthz``, ``/readyz``, ``/metrics``) are left out so they do not drown real traffic.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

GROUPS = ("api", "inbound")
BUCKET_SECONDS = 10
WINDOW_SECONDS = 300
# "current" is the mean of the last minute: recent, yet not one lone request.
CURRENT_SECONDS = 60
_KEY = "monoduty:response-time:{group}:{bucket}"
_BASE_MS = 0.1
_RATIO = 2 ** (1 / 8)
_MAX_BIN = 200  # ~56 minutes: anything slower lands in the last bin


def bin_of(ms: float) -> int:
    if ms <= _BASE_MS:
        return 0
    return min(_MAX_BIN, math.ceil(math.log(ms / _BASE_MS, _RATIO)))


def bin_value(index: int) -> float:
    """A bin's representative duration: the geometric middle of its range."""
    return _BASE_MS * _RATIO ** (index - 0.5) if index else _BASE_MS


@dataclass
class _Bucket:
    bins: Counter[int] = field(default_factory=Counter)
    count: int = 0
    total_ms: float = 0.0


class Recorder:
    """In-process durations waiting to be flushed to Redis."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], _Bucket] = defaultdict(_Bucket)

    def record(self, group: str, ms: float, now: float | None = None) -> None:
        bucket_start = int((now if now is not None else time.time()) // BUCKET_SECONDS) * BUCKET_SECONDS
        bucket = self._pending[(group, bucket_start)]
        bucket.bins[bin_of(ms)] += 1
        bucket.count += 1
        bucket.total_ms += ms

    async def flush(self, redis: Redis) -> None:
        """Add what was recorded to Redis; if Redis is away the numbers are dropped, not hoarded."""
        pending, self._pending = self._pending, defaultdict(_Bucket)
        if not pending:
            return
        async with redis.pipeline(transaction=False) as pipe:
            for (group, bucket_start), bucket in pending.items():
                key = _KEY.format(group=group, bucket=bucket_start)
                for index, n in bucket.bins.items():
                    pipe.hincrby(key, str(index), n)
                pipe.hincrby(key, "n", bucket.count)
                pipe.hincrbyfloat(key, "sum", bucket.total_ms)
                pipe.expire(key, WINDOW_SECONDS + 2 * BUCKET_SECONDS)
            await pipe.execute()


def _percentile(bins: Counter[int], count: int, q: float) -> float:
    rank = max(1, math.ceil(q * count))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return round(bin_value(index), 2)
    return round(bin_value(max(bins)), 2)


def _stats(buckets: list[tuple[int, dict[str, str]]], now: float) -> dict[str, Any]:
    bins: Counter[int] = Counter()
    count, recent_count, recent_total = 0, 0, 0.0
    for bucket_start, data in buckets:
        n = int(data.get("n", 0))
        count += n
        if bucket_start + BUCKET_SECONDS > now - CURRENT_SECONDS:
            recent_count += n
            recent_total += float(data.get("sum", 0))
        for name, value in data.items():
            if name.isdigit():
                bins[int(name)] += int(value)
    if not count:
        return {"current_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None, "sample_count": 0}
    return {
        "current_ms": round(recent_total / recent_count, 2) if recent_count else None,
        "p50_ms": _percentile(bins, count, 0.50),
        "p95_ms": _percentile(bins, count, 0.95),
        "p99_ms": _percentile(bins, count, 0.99),
        "sample_count": count,
    }


async def read(redis: Redis, now: float | None = None) -> dict[str, Any]:
    """Response times over the last ``WINDOW_SECONDS``: all groups together, and each group."""
    now = now if now is not None else time.time()
    last = int(now // BUCKET_SECONDS) * BUCKET_SECONDS
    starts = list(range(last - WINDOW_SECONDS + BUCKET_SECONDS, last + 1, BUCKET_SECONDS))
    async with redis.pipeline(transaction=False) as pipe:
        for group in GROUPS:
            for start in starts:
                pipe.hgetall(_KEY.format(group=group, bucket=start))
        found = await pipe.execute()
    per_group: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for g, group in enumerate(GROUPS):
        per_group[group] = [
            (start, {_s(k): _s(v) for k, v in found[g * len(starts) + i].items()})
            for i, start in enumerate(starts)
        ]
    everything = [b for buckets in per_group.values() for b in buckets]
    return {
        "window_seconds": WINDOW_SECONDS,
        **_stats(everything, now),
        "groups": {group: _stats(buckets, now) for group, buckets in per_group.items()},
    }


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
