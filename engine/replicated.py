"""An accepted alert is answered 202 only once a replica holds it, when the sentinels see a replica.

Redis replicates asynchronously. In a planned failover (``SENTINEL FAILOVER``) the sentinels
promote the replica first and name it primary about a second later; the old primary, not told,
keeps taking writes for about ten seconds more, then becomes a replica of the new one with a full
resync that throws away everything it took since the promotion (214 of 900 accepted alerts in
tests/test_redis_sentinel.py). A crash loses what the replica had not received yet.

So behind Sentinel, with a replica in sync as the sentinels last saw (``engine.queue``'s pool
asks every half second), the alert's writes are followed by Redis's ``WAIT`` for one replica:
once the replica was promoted it no longer reads from the old primary, the wait runs out and the
sender gets a 503 + Retry-After to send again, to the new primary by then. Without a replica
(one Redis, or the new primary before the old one has rejoined) nothing waits: no failover can
then discard what the primary holds.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from redis.exceptions import ConnectionError as RedisConnectionError

# How long a replica may take to confirm. Milliseconds when it is linked; a promoted replica never
# confirms. Below the command timeout (engine.queue), so a timeout means "not replicated".
WAIT_MS = 500

# WAIT counts the replicas holding this connection's last write; the job was written on another
# connection, possibly to the former primary, so this script checks the job is on the server we
# ask and writes a key of its own (replicated after the job: one stream, in order) for WAIT.
# KEYS: the job's key, its result key, the barrier key. Answers 1 if the job is here.
CONFIRM_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
    return 0
end
redis.call('SET', KEYS[3], '1', 'PX', 60000)
return 1
"""


def expects_replica(redis: ArqRedis) -> bool:
    """True behind Sentinel while the sentinels see a replica in sync with the primary."""
    return getattr(redis.connection_pool, "replicas", 0) > 0


async def confirm(redis: ArqRedis, job_id: str, expected: bool | None = None) -> None:
    """Return once a replica holds job ``job_id`` (and every write before it), if one should;
    raise a Redis ConnectionError (a 503 for a sender) if it does not within ``WAIT_MS``.

    ``expected``: ``expects_replica`` as it was before the job was written. Asked after, it may
    already describe the new primary (no replica yet) while the job went to the old one: under
    load, 88 accepted alerts were lost that way in one planned failover."""
    if not (expects_replica(redis) if expected is None else expected):
        return
    keys = (job_key_prefix + job_id, result_key_prefix + job_id, redis.default_queue_name + ":replicated")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(CONFIRM_SCRIPT, len(keys), *keys)
        pipe.execute_command("WAIT", 1, WAIT_MS)
        here, replicas = await pipe.execute()
    if not int(here):
        raise RedisConnectionError("not confirmed: the job is not on the primary (it changed)")
    if int(replicas) < 1:
        raise RedisConnectionError("not confirmed: no replica acknowledged the job (a failover?)")
