"""The Redis job queue (arq): connection, JSON job encoding, and the enqueue calls.

Jobs are encoded as JSON, never pickle: whoever can write to Redis must not be able to run code
in a worker. Job ids are our own row ids (alert id, delivery id), so enqueueing the same work
twice is a no-op while the job or its result is still in Redis.

Every Redis call is bounded in time (``connect``): a Redis that stopped answering (frozen, behind a
dropped route) must turn into an error the caller can act on, a 503 + Retry-After for a sender or
a deferred job, within seconds, never into a request or a worker stuck until the server returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import redis_url as redis_urls
from engine.clock import queue_ms
from engine.errors import STORAGE_DOWN

log = logging.getLogger("monoduty.queue")

PROCESS_ALERT = "process_alert"
DELIVER = "deliver"
ESCALATE = "escalate"


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


# Every command of ours and arq's takes a millisecond or two; a Redis that has not answered in this
# long is stalled (SIGSTOP, a VM paused, a dropped route). arq sets only a connect timeout (and
# redis-py none at all), so without these a stalled Redis held every sender until it came back.
# No command we or arq send blocks on the server (no BLPOP, no pub/sub), so one bound fits all.
CONNECT_TIMEOUT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 1.5

# Connections one process may hold; a caller waits at most a command timeout for a free one.
# (Far above what a process uses: each command holds one for a millisecond or two.)
MAX_CONNECTIONS = 1000

# At start-up a Redis not there yet is waited for about a minute (a stack starting all at once).
STARTUP_RETRIES = 30
STARTUP_RETRY_DELAY = 2.0


class _CancelSafeSend(AbstractConnection):
    """redis-py's connection, except that a cancelled caller stays cancelled while it sends.

    redis-py 5.3 bounds a send with ``asyncio.wait_for`` whenever a socket timeout is set. On
    Python 3.11 ``wait_for`` returns the inner result when the send finished in the same loop turn
    as the cancel (cpython gh-86296, fixed in 3.12), and the cancel is lost: about one cancel in two
    that met a Redis command. arq stops a worker with one ``main_task.cancel()``, so a lost one left
    ``monoduty worker`` polling on after SIGTERM, for good. ``asyncio.timeout`` gives the same bound
    and keeps the cancel.
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.socket_timeout:
            return await super().send_packed_command(command, check_health)
        if not self.is_connected:
            await self.connect()
        elif check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout):
                await self._send_packed_command(command)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {type(exc).__name__}") from exc
        except RuntimeError as exc:
            # uvloop refuses a write on a transport being closed ("the handler is closed"): redis-py's
            # pool closes idle connections without taking them out first (as the Sentinel pool does
            # when the primary changes), and a caller may be handed one meanwhile. A lost connection,
            # not a bug: before this, a worker died of it in a failover.
            await self.disconnect(nowait=True)
            raise RedisConnectionError("Error while writing to socket: the connection was closed") from exc
        except BaseException:
            # As redis-py: a send cut short leaves the connection unusable.
            await self.disconnect(nowait=True)
            raise


class _TcpConnection(_CancelSafeSend, Connection):
    pass


class _SslConnection(_CancelSafeSend, SSLConnection):
    pass


class _UnixConnection(_CancelSafeSend, UnixDomainSocketConnection):
    pass


_CANCEL_SAFE: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _TcpConnection,
    SSLConnection: _SslConnection,
    UnixDomainSocketConnection: _UnixConnection,
}


class _SentinelConnection(_CancelSafeSend, SentinelManagedConnection):
    """A connection to whichever server the sentinels name primary, asked again at each connect.

    redis-py turns a READONLY answer (the server we still talk to was demoted by a failover) into a
    ConnectionError and drops the connection, so the next command finds the new primary.
    """


# How often a Sentinel pool asks the sentinels which server is primary while it is in use.
SENTINEL_CHECK_SECONDS = 0.5


class _SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool on the blocking pool's locking (see ``_pool``): the primary's
    address comes from the sentinels, every other behaviour is the plain URL's.

    redis-py asks the sentinels only when it opens a connection, so after a planned failover
    (``SENTINEL FAILOVER``: the old primary stays up and takes writes until the sentinels demote
    it, seconds later) open connections kept writing to it, and what it took was thrown away
    when it became a replica: 538 of 900 accepted alerts in tests/test_redis_sentinel.py. Here
    the primary is asked again every ``SENTINEL_CHECK_SECONDS``, and a connection handed out that
    is still on a former primary is reconnected first. That leaves the second between the
    replica's promotion and the sentinels naming it (214 of 900 lost): engine.replicated closes
    it, with the count of replicas in sync asked at the same time (``replicas``).
    """

    _checked_at = 0.0
    # How many replicas the sentinels see in sync with the primary (engine.replicated waits for one).
    replicas = 0

    async def get_connection(self, *args: Any, **options: Any) -> AbstractConnection:
        now = time.monotonic()
        if now - self._checked_at >= SENTINEL_CHECK_SECONDS:
            self._checked_at = now  # one caller asks; the others go on with what is known
            # No primary named now: the connection's own attempt below reports it.
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                await self.get_master_address()  # closes idle connections if the primary moved
                self.replicas = await self._replicas_in_sync()
        connection = await super().get_connection(*args, **options)
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        if self.master_address is not None and connection.is_connected and address != self.master_address:
            try:
                await connection.disconnect()
                await connection.connect()  # asks the sentinels again
            except BaseException:
                await self.release(connection)
                raise
        return connection

    async def _replicas_in_sync(self) -> int:
        # A replica being promoted still counts (its link was "ok" when the sentinels last looked),
        # and so does one the sentinels lost touch with but do not call down: a failover cuts every
        # sentinel's connection to the replica it promotes. That is what makes the old primary's
        # writes wait, and fail, during a planned failover. A former primary not yet turned into
        # a replica does not count (its link is not "ok"), nor a replica down for the sentinels.
        for sentinel in self.sentinel_manager.sentinels:
            try:
                replicas = await sentinel.sentinel_slaves(self.service_name)
            except (RedisConnectionError, RedisTimeoutError, ResponseError):
                continue
            return sum(
                1
                for r in replicas
                if not (r["is_sdown"] or r["is_odown"]) and r.get("master-link-status") == "ok"
            )
        return self.replicas  # no sentinel answered: what was known


def _pool(url: str) -> BlockingConnectionPool:
    """The connection pool for ``url``: one server, or the primary that Redis Sentinel names."""
    bounds: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
    }
    if not redis_urls.is_sentinel(url):
        # redis-py's default pool opens a new connection while holding its lock: with Redis frozen,
        # each caller then waited for every earlier caller's connection attempt to time out
        # (concurrent requests got their 503 after 1.5 s, 3 s, 4.5 s...). The blocking pool
        # connects outside its lock.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=COMMAND_TIMEOUT_SECONDS, **bounds
        )
        # The class redis-py picked for the URL's scheme (redis, rediss, unix), cancel-safe.
        pool.connection_class = _CANCEL_SAFE.get(pool.connection_class, pool.connection_class)
        return pool
    target = redis_urls.parse_sentinel(url)
    # Sentinels answer the one question "which server is primary?"; bounded like every call.
    sentinels = Sentinel(
        list(target.sentinels), sentinel_kwargs={**bounds, "password": target.sentinel_password}
    )
    return _SentinelPool(
        target.service,
        sentinels,
        connection_class=_SentinelConnection,
        max_connections=MAX_CONNECTIONS,
        timeout=COMMAND_TIMEOUT_SECONDS,
        db=target.db,
        username=target.username,
        password=target.password,
        **bounds,
    )


async def connect(url: str, *, retries: int = STARTUP_RETRIES, queue_name: str | None = None) -> ArqRedis:
    """A Redis client for jobs (arq's ``ArqRedis``) with every call bounded; ``retries`` at start-up.

    Every Redis client of Monoduty is made here (API, workers, CLI), so ``url`` may be any form
    ``engine.redis_url`` reads, Sentinel's included. Not arq's ``create_pool``: its settings have
    no socket (command) timeout to give.
    """
    attempt = 0
    while True:
        pool = _pool(url)
        redis = ArqRedis(
            pool,
            job_serializer=serialize,
            job_deserializer=deserialize,
            default_queue_name=queue_name or default_queue_name,
        )
        redis.auto_close_connection_pool = True  # as from_pool sets it: aclose() closes the pool too
        try:
            await redis.ping()
            return redis
        except STORAGE_DOWN as exc:
            await redis.aclose()
            if attempt >= retries:
                raise
            attempt += 1
            # The type only: a driver's message may name the host and the user.
            log.warning("redis unreachable at start-up (%s), retrying", type(exc).__name__)
            await asyncio.sleep(STARTUP_RETRY_DELAY)


def alert_job(
    alert_id: str,
    webhook_id: str,
    body: str,
    content_type: str | None,
    received_at: datetime,
    request_id: str | None = None,
    is_test: bool = False,
) -> dict[str, Any]:
    """The one argument of a process_alert job (engine.alerts.enqueue writes it in its own script)."""
    # The ids come first and the body after them: arq logs the first 80 characters of a job's
    # arguments when it starts the job, and a body may hold anything (tests/test_job_logs.py).
    return {
        "alert_id": alert_id,
        "webhook_id": webhook_id,
        "body": body,
        "content_type": content_type,
        "received_at": received_at.isoformat(),
        "request_id": request_id,
        "is_test": is_test,
    }


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
    job = alert_job(alert_id, webhook_id, body, content_type, received_at, request_id, is_test)
    return await _enqueue(redis, alert_id, PROCESS_ALERT, job)


async def enqueue_refusal(
    redis: ArqRedis,
    alert_id: str,
    webhook_id: str,
    *,
    sender: str,
    size: int | None,
    limit: int,
    received_at: datetime,
    request_id: str | None = None,
) -> bool:
    """Queue the alert that tells the owner a body was refused as too large (no body kept)."""
    return await _enqueue(
        redis,
        alert_id,
        PROCESS_ALERT,
        {
            "alert_id": alert_id,
            "webhook_id": webhook_id,
            "body": "",
            "content_type": None,
            "received_at": received_at.isoformat(),
            "request_id": request_id,
            "refused": {"sender": sender, "size": size, "limit": limit},
        },
    )


async def enqueue_delivery(redis: ArqRedis, delivery_id: str, *, request_id: str | None = None) -> bool:
    """Queue one delivery; False if it is queued already (or done lately)."""
    return await _enqueue(redis, delivery_id, DELIVER, delivery_id, request_id)


# KEYS: the queue, then each job's key and result key. ARGV: the expiry ms, the score, then each
# job's id and serialized job. Answers how many were queued (an id queued or done already is not).
ENQUEUE_MANY_SCRIPT = """
local queued = 0
for i = 1, (#KEYS - 1) / 2 do
    local job_key, result_key = KEYS[2 * i], KEYS[2 * i + 1]
    if redis.call('EXISTS', job_key, result_key) == 0 then
        redis.call('PSETEX', job_key, ARGV[1], ARGV[2 + 2 * i])
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1 + 2 * i])
        queued = queued + 1
    end
end
return queued
"""
ENQUEUE_MANY_SHA = hashlib.sha1(ENQUEUE_MANY_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


async def enqueue_deliveries(
    redis: ArqRedis, delivery_ids: list[str], *, request_id: str | None = None, defer: float | None = None
) -> int:
    """Queue deliveries (``defer``: seconds from now) in one round trip; how many were queued now.

    What ``enqueue_delivery`` does for each, as arq's ``enqueue_job`` writes it (job key with arq's
    expiry, the queue's sorted set), in one script: atomic on the server, so no WATCH is needed and
    a connection lost on the way is an error, never a job taken for queued. An alert's fan-out is
    one round trip instead of four per delivery (arq's WATCH, EXISTS, MULTI...EXEC)."""
    if not delivery_ids:
        return 0
    now_ms = queue_ms()  # the database's clock, as the workers poll (engine.clock: skew)
    defer_ms = round((defer or 0) * 1000)
    keys: list[str] = [redis.default_queue_name]
    jobs: list[Any] = []
    for delivery_id in delivery_ids:
        keys += [job_key_prefix + delivery_id, result_key_prefix + delivery_id]
        job = serialize_job(DELIVER, (delivery_id, request_id), {}, None, now_ms, serializer=serialize)
        jobs += [delivery_id, job]
    args = (defer_ms + redis.expires_extra_ms, now_ms + defer_ms, *jobs)
    try:
        queued = await redis.evalsha(ENQUEUE_MANY_SHA, len(keys), *keys, *args)  # type: ignore[misc]
    except NoScriptError:  # first use on this Redis (or after SCRIPT FLUSH / a restart)
        queued = await redis.eval(ENQUEUE_MANY_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc]
    return int(queued)


# KEYS: the queue, then each job's key, in-progress key and result key. ARGV as ENQUEUE_MANY's.
# A job that exists (queued, deferred, running) is left alone; a result key without its job is a
# run that ended while its delivery is still pending (arq's "job expired" for a job whose key a
# flush took, or a job failed for good): it no longer stands for a job, so it goes.
REQUEUE_SCRIPT = """
local queued = 0
for i = 1, (#KEYS - 1) / 3 do
    local job_key, in_progress_key, result_key = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
    if redis.call('EXISTS', job_key, in_progress_key) == 0 then
        redis.call('DEL', result_key)
        redis.call('PSETEX', job_key, ARGV[1], ARGV[2 + 2 * i])
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1 + 2 * i])
        queued = queued + 1
    end
end
return queued
"""
REQUEUE_SHA = hashlib.sha1(REQUEUE_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


async def requeue_deliveries(redis: ArqRedis, delivery_ids: list[str]) -> int:
    """Queue again deliveries whose job may be gone (engine.alerts.stranded); how many were queued.

    As ``enqueue_deliveries``, except that a delivery's old result does not stop it: only a job of
    its id that still exists (its key, or its in-progress claim) does, so a job queued or running
    is never doubled."""
    if not delivery_ids:
        return 0
    now_ms = queue_ms()
    keys: list[str] = [redis.default_queue_name]
    jobs: list[Any] = []
    for delivery_id in delivery_ids:
        keys += [
            job_key_prefix + delivery_id,
            in_progress_key_prefix + delivery_id,
            result_key_prefix + delivery_id,
        ]
        jobs += [
            delivery_id,
            serialize_job(DELIVER, (delivery_id, None), {}, None, now_ms, serializer=serialize),
        ]
    args = (redis.expires_extra_ms, now_ms, *jobs)
    try:
        queued = await redis.evalsha(REQUEUE_SHA, len(keys), *keys, *args)  # type: ignore[misc]
    except NoScriptError:
        queued = await redis.eval(REQUEUE_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc]
    return int(queued)


async def enqueue_wake_up(redis: ArqRedis, job_id: str, at: datetime) -> bool:
    """Queue an escalation sweep to run at ``at`` (real time); False if that job id is queued or
    ran lately. Only a wake-up: the worker cron sweeps anyway, so nothing is lost without it."""
    return await redis.enqueue_job(ESCALATE, _job_id=job_id, _defer_until=at) is not None


async def _enqueue(redis: ArqRedis, job_id: str, function: str, *args: Any) -> bool:
    """arq's ``enqueue_job`` with its ``None`` checked: True if queued now, False if already there.

    arq answers None both for "this job id is queued or done already" and when the connection died
    at EXEC (redis-py raises a WatchError for a connection lost inside a WATCH, which arq takes for
    a conflict): the job may then be nowhere, and a 202 for it, or a delivery counted as queued,
    would be a lost alert. So a None is checked, and an enqueue not confirmed is a storage error.
    """
    if await redis.enqueue_job(function, *args, _job_id=job_id) is not None:
        return True
    if await redis.exists(job_key_prefix + job_id, result_key_prefix + job_id):
        return False
    raise RedisConnectionError("enqueue not confirmed: the connection was lost at EXEC")
