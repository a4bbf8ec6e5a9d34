"""Looking into the arq queue in Redis: counts by job function, one job, retry, purge.

arq 0.28 keeps, for a queue named ``Q`` (ours: ``settings.queue_name``, ``arq:queue``):

    Q                      sorted set: job id -> time (ms) it is due; holds queued, deferred and running jobs
    arq:job:<id>           the job, JSON here: {"f": function, "a": args, "k": kwargs, "t": try,
                           "et": enqueued at (ms)}
    arq:in-progress:<id>   exists while a worker runs the job
    arq:retry:<id>         how many times the job was started (arq INCRs it at each start)
    arq:result:<id>        a finished job: the job's fields plus "s" (success), "r" (result or error),
                           "st"/"ft" (started/finished ms); kept ``keep_result`` seconds
    Q:health-check         written by every worker each health-check interval, with a TTL

A job that raised ``Retry`` stays in ``Q`` with a score in the future: *deferred*. A job that
finished without raising is *completed*, whatever it returned (a delivery that failed for good
is a completed ``deliver`` job whose result is ``"failed"``); *failed* means the job itself
raised, or ran out of arq tries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from redis.asyncio import Redis

from engine import queue
from engine.errors import Conflict, NotFound
from engine.masking import mask_value
from engine.observability import presence

_CHUNK = 500
UNKNOWN = "<unknown>"


@dataclass
class FunctionCounts:
    queued: int = 0
    deferred: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0


@dataclass
class QueueSummary:
    """Everything ``monoduty queue`` shows."""

    functions: dict[str, FunctionCounts] = field(default_factory=dict)
    oldest_queued_seconds: float | None = None
    workers_alive: int = 0
    health_check: str | None = None

    def totals(self) -> FunctionCounts:
        total = FunctionCounts()
        for counts in self.functions.values():
            for name, value in asdict(counts).items():
                setattr(total, name, getattr(total, name) + value)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "functions": {name: asdict(c) for name, c in sorted(self.functions.items())},
            "totals": asdict(self.totals()),
            "oldest_queued_seconds": self.oldest_queued_seconds,
            "workers_alive": self.workers_alive,
            "health_check": self.health_check,
        }


@dataclass(frozen=True)
class QueueLoad:
    """The cheap, bounded view the status API shows (no scan of the key space)."""

    queued: int
    in_progress: int
    retrying: int
    oldest_queued_seconds: float | None


def _now_ms() -> float:
    return time.time() * 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = queue.deserialize(raw)
    except ValueError:
        return None  # not ours (a pickled job from some other arq user): count it as unknown
    return data if isinstance(data, dict) else None


async def _scan(redis: ArqRedis, prefix: str) -> list[str]:
    return [_text(k) for k in [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]]


async def summarize(redis: ArqRedis, queue_name: str) -> QueueSummary:
    """Exact counts: walks the whole queue and every kept result. For operators, not for hot paths."""
    now = _now_ms()
    summary = QueueSummary()
    entries = await redis.zrange(queue_name, 0, -1, withscores=True)
    oldest: float | None = None
    for start in range(0, len(entries), _CHUNK):
        chunk = entries[start : start + _CHUNK]
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in chunk:
                pipe.get(job_key_prefix + _text(job_id))
                pipe.exists(in_progress_key_prefix + _text(job_id))
            found = await pipe.execute()
        for index, (_, score) in enumerate(chunk):
            job = _decode(found[2 * index])
            counts = summary.functions.setdefault(str(job["f"]) if job else UNKNOWN, FunctionCounts())
            if found[2 * index + 1]:
                counts.in_progress += 1
            elif score > now:
                counts.deferred += 1
            else:
                counts.queued += 1
                oldest = score if oldest is None else min(oldest, score)
    if oldest is not None:
        summary.oldest_queued_seconds = round((now - oldest) / 1000, 3)
    result_keys = await _scan(redis, result_key_prefix)
    for start in range(0, len(result_keys), _CHUNK):
        for raw in await redis.mget(result_keys[start : start + _CHUNK]):
            result = _decode(raw)
            if raw is None:
                continue  # expired between the scan and the read
            counts = summary.functions.setdefault(str(result["f"]) if result else UNKNOWN, FunctionCounts())
            if result and result.get("s"):
                counts.completed += 1
            else:
                counts.failed += 1
    summary.workers_alive = await presence.count_alive(redis, presence.WORKERS)
    health = await redis.get(queue_name + health_check_key_suffix)
    summary.health_check = _text(health) if health is not None else None
    return summary


async def load(redis: Redis, queue_name: str, *, sample: int = 1000) -> QueueLoad:
    """Queued / running / retrying counts in a few Redis calls, whatever the size of the queue.

    Running jobs stay in the queue with a due score, so they are found among the ``sample``
    oldest due jobs (workers take the oldest first); past that many, the split is an estimate.
    """
    now = _now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(queue_name, "-inf", now)
        pipe.zcount(queue_name, f"({now}", "+inf")
        pipe.zrangebyscore(queue_name, "-inf", now, start=0, num=sample, withscores=True)
        due, deferred, oldest_due = await pipe.execute()
    running: list[int] = []
    if oldest_due:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in oldest_due:
                pipe.exists(in_progress_key_prefix + _text(job_id))
            running = await pipe.execute()
    waiting = [score for (_, score), busy in zip(oldest_due, running, strict=True) if not busy]
    in_progress = sum(1 for busy in running if busy)
    return QueueLoad(
        queued=int(due) - in_progress,
        in_progress=in_progress,
        retrying=int(deferred),
        oldest_queued_seconds=round((now - waiting[0]) / 1000, 3) if waiting else None,
    )


def _ms_to_iso(ms: float | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


async def show(redis: ArqRedis, queue_name: str, job_id: str) -> dict[str, Any]:
    """One job as an operator needs it, with anything secret-looking in its arguments masked."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(job_key_prefix + job_id)
        pipe.zscore(queue_name, job_id)
        pipe.exists(in_progress_key_prefix + job_id)
        pipe.get(retry_key_prefix + job_id)
        pipe.get(result_key_prefix + job_id)
        raw_job, score, running, tries, raw_result = await pipe.execute()
    result = _decode(raw_result)
    job = result or _decode(raw_job)
    if job is None:
        if raw_job is None and raw_result is None and score is None:
            raise NotFound(f"no job {job_id} in the queue or among kept results", code="JOB_NOT_FOUND")
        job = {"f": UNKNOWN, "a": [], "k": {}}
    if result is not None:
        state = "completed" if result.get("s") else "failed"
    elif running:
        state = "in_progress"
    elif score is not None and score > _now_ms():
        state = "deferred"
    else:
        state = "queued"
    detail: dict[str, Any] = {
        "job_id": job_id,
        "function": job.get("f", UNKNOWN),
        "state": state,
        "args": mask_value(job.get("a", [])),
        "kwargs": mask_value(job.get("k", {})),
        "tries": int(result["t"]) if result else int(tries or 0),
        "enqueued_at": _ms_to_iso(job.get("et")),
        "due_at": _ms_to_iso(score) if score is not None else None,
    }
    if result is not None:
        detail["started_at"] = _ms_to_iso(result.get("st"))
        detail["finished_at"] = _ms_to_iso(result.get("ft"))
        key = "result" if result.get("s") else "error"
        detail[key] = mask_value(result.get("r"))
    return detail


async def retry(redis: ArqRedis, queue_name: str, job_id: str) -> str:
    """Run a failed job again under the same id; answers the job's function name."""
    result = _decode(await redis.get(result_key_prefix + job_id))
    if result is None:
        raise NotFound(f"no kept result for job {job_id}: nothing to retry", code="JOB_NOT_FOUND")
    if result.get("s"):
        raise Conflict(f"job {job_id} completed; only failed jobs are retried", code="JOB_NOT_FAILED")
    # arq refuses to enqueue an id whose result still exists: the result goes first.
    await redis.delete(result_key_prefix + job_id)
    job = await redis.enqueue_job(
        result["f"], *result.get("a", []), _job_id=job_id, _queue_name=queue_name, **result.get("k", {})
    )
    if job is None:
        raise Conflict(f"job {job_id} is already queued again", code="JOB_QUEUED")
    return str(result["f"])


async def failed_jobs(redis: ArqRedis) -> list[str]:
    """Ids of every kept result that is a failure."""
    keys = await _scan(redis, result_key_prefix)
    failed: list[str] = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        for key, raw in zip(chunk, await redis.mget(chunk), strict=True):
            result = _decode(raw)
            if raw is not None and not (result and result.get("s")):
                failed.append(key[len(result_key_prefix) :])
    return failed


async def purge(redis: ArqRedis, job_ids: list[str]) -> int:
    """Forget the results of these jobs; answers how many were still there."""
    deleted = 0
    for start in range(0, len(job_ids), _CHUNK):
        deleted += await redis.delete(*(result_key_prefix + j for j in job_ids[start : start + _CHUNK]))
    return deleted
