"""The Redis job queue (arq): connection, JSON job encoding, and the enqueue calls.

Jobs are encoded as JSON, never pickle: whoever can write to Redis must not be able to run code
in a worker. Job ids are our own row ids (alert id, delivery id), so enqueueing the same work
twice is a no-op while the job or its result is still in Redis.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix, result_key_prefix
from redis.exceptions import ConnectionError as RedisConnectionError

PROCESS_ALERT = "process_alert"
DELIVER = "deliver"


def _default(value: Any) -> Any:
    # arq stores a failed job's exception as its result; keep its text rather than fail to save it.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def serialize(data: dict[str, Any]) -> bytes:
    return json.dumps(data, default=_default, separators=(",", ":")).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # A lost connection at start-up is retried for about a minute before giving up.
    settings.conn_retries = 30
    settings.conn_retry_delay = 2
    return settings


async def connect(url: str) -> ArqRedis:
    return await create_pool(redis_settings(url), job_serializer=serialize, job_deserializer=deserialize)


async def enqueue_alert(
    redis: ArqRedis,
    alert_id: str,
    webhook_id: str,
    *,
    body: str,
    content_type: str | None,
    received_at: datetime,
    request_id: str | None = None,
    is_test: bool = False,
) -> bool:
    """Queue an inbound alert for processing; False if that alert id is already queued."""
    # The ids come first and the body after them: arq logs the first 80 characters of a job's
    # arguments when it starts the job, and a body may hold anything (tests/test_job_logs.py).
    job = await redis.enqueue_job(
        PROCESS_ALERT,
        {
            "alert_id": alert_id,
            "webhook_id": webhook_id,
            "body": body,
            "content_type": content_type,
            "received_at": received_at.isoformat(),
            "request_id": request_id,
            "is_test": is_test,
        },
        _job_id=alert_id,
    )
    return await _queued(redis, job, alert_id)


async def enqueue_delivery(redis: ArqRedis, delivery_id: str, *, request_id: str | None = None) -> bool:
    job = await redis.enqueue_job(DELIVER, delivery_id, request_id, _job_id=delivery_id)
    return await _queued(redis, job, delivery_id)


async def _queued(redis: ArqRedis, job: object | None, job_id: str) -> bool:
    """True if the job was queued now, False if it was queued (or ran) before; raises if neither.

    arq answers None for "that job id is taken" and also when the connection drops at EXEC: redis-py
    raises WatchError then, which arq takes for a concurrent enqueue. Trusting that None answered
    202 for alerts that were never queued (a Redis crash under load), and left deliveries pending
    with no job. Looking tells the two apart; an unqueued job means Redis is away.
    """
    if job is not None:
        return True
    if not await redis.exists(job_key_prefix + job_id, result_key_prefix + job_id):
        raise RedisConnectionError("the connection to Redis dropped while queueing a job")
    return False
