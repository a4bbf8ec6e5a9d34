"""engine.alerts.enqueue: an accepted alert's rate limit and arq job in one round trip, read back
by arq's own reader as the job arq's ``enqueue_job`` would have written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import Job, JobStatus, deserialize_job

from engine import queue, ratelimit
from engine.alerts import enqueue
from engine.settings import RateLimit

RECEIVED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def accept(redis: ArqRedis, alert_id: str, limit: RateLimit, bucket: str) -> enqueue.Outcome:
    return await enqueue.limited_alert(
        redis,
        bucket,
        limit,
        alert_id,
        "5b2f3c1e-0000-4000-8000-000000000001",
        body='{"title": "disk full"}',
        content_type="application/json",
        received_at=RECEIVED,
        request_id="req-1",
    )


async def test_the_job_is_the_one_arq_would_have_queued(redis: ArqRedis) -> None:
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    outcome = await accept(redis, ours, RateLimit(10, 60), ratelimit.bucket("inbound", "token-a"))
    assert outcome.queued and outcome.verdict.allowed and outcome.verdict.count == 1
    payload = queue.alert_job(
        theirs,
        "5b2f3c1e-0000-4000-8000-000000000001",
        '{"title": "disk full"}',
        "application/json",
        RECEIVED,
        "req-1",
    )
    assert await redis.enqueue_job(queue.PROCESS_ALERT, payload, _job_id=theirs) is not None

    # arq's reader: status, function, arguments, as for the job arq queued itself.
    job = Job(ours, redis, _deserializer=queue.deserialize)
    assert await job.status() == JobStatus.queued
    info = await job.info()
    assert info is not None and info.function == queue.PROCESS_ALERT and info.kwargs == {}
    assert list(info.args) == [{**payload, "alert_id": ours}]  # JSON: a list, as for arq's own
    raw_ours = await redis.get(job_key_prefix + ours)
    raw_theirs = await redis.get(job_key_prefix + theirs)
    read_ours = deserialize_job(raw_ours, deserializer=queue.deserialize)
    read_theirs = deserialize_job(raw_theirs, deserializer=queue.deserialize)
    assert (read_ours.function, read_ours.job_try, read_ours.kwargs) == (
        read_theirs.function,
        read_theirs.job_try,
        read_theirs.kwargs,
    )
    # Due at once, kept as long as arq keeps a job it queued.
    score = await redis.zscore(default_queue_name, ours)
    assert score == info.enqueue_time.timestamp() * 1000
    ttl_ours, ttl_theirs = await redis.pttl(job_key_prefix + ours), await redis.pttl(job_key_prefix + theirs)
    assert abs(ttl_ours - ttl_theirs) < 60_000 and ttl_ours > redis.expires_extra_ms - 60_000


async def test_over_the_limit_queues_nothing_and_a_repeat_is_queued_once(redis: ArqRedis) -> None:
    limit, bucket = RateLimit(2, 60), ratelimit.bucket("inbound", "token-b")
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    outcomes = [await accept(redis, alert_id, limit, bucket) for alert_id in (first, second, first, third)]

    assert [o.queued for o in outcomes] == [True, True, False, False]
    # The repeat counted as a hit, as before; the fourth is refused, and its window is the limit's.
    assert [o.verdict.count for o in outcomes] == [1, 2, 3, 4]
    assert [o.verdict.allowed for o in outcomes] == [True, True, False, False]
    assert outcomes[2].verdict.first_refusal and 0 < outcomes[3].verdict.reset_ms <= 60_000
    assert sorted(m.decode() for m in await redis.zrange(default_queue_name, 0, -1)) == sorted(
        [first, second]
    )
    assert not await redis.exists(job_key_prefix + third)


async def test_the_script_is_loaded_again_after_a_flush(redis: ArqRedis) -> None:
    """A Redis restarted (or SCRIPT FLUSH) has forgotten the script: the call still works."""
    await redis.script_flush()
    outcome = await accept(
        redis, str(uuid.uuid4()), RateLimit(10, 60), ratelimit.bucket("inbound", "token-c")
    )
    assert outcome.queued
