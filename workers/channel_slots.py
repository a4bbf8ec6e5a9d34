"""At most N sends at once per channel in one worker process, so one hung provider cannot take
every job slot.

Without a bound, a provider that hangs (a dead ntfy server, an SMTP relay that accepts the
connection and says nothing) holds one arq job slot per send until the provider timeout: 250 sends
to it fill a worker's 200 slots, and healthy emails on other webhooks wait behind them.

A deliver job whose channel is full does not wait inside the job (a waiter would still hold its
arq slot): it *parks*, i.e. leaves at once with ``Retry`` so the slot is free again, before any
delivery attempt is counted in PostgreSQL. Parking must not be mistaken for a try either, or a long
outage would spend arq's ``max_tries`` and fail the job for good, and arq's job key expires a day
after it was queued, which would lose a delivery parked for longer. :func:`park` therefore takes
this start back off arq's try counter and renews the job key's lifetime. (arq has no "defer without
counting" of its own; its key layout is the one the README documents for arq 0.28.)

A send that ends wakes the delivery that has waited longest in this process for the channel (its
job becomes due now), so a busy but healthy channel keeps its slots full. Parked jobs also come
back on their own after :meth:`ChannelSlots.wait_delay` (a lost wake-up, or one parked by another
worker), which grows with how many deliveries this process has seen waiting for the channel, so
that thousands of waiters do not spend the worker's time finding the channel still full. The limit
is per worker process: N workers send up to N times ``MONODUTY_CHANNEL_CONCURRENCY`` on a channel.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, retry_key_prefix

from engine.clock import queue_ms

log = logging.getLogger("monoduty.worker")

# A parked job comes back within this long at most, so a recovered provider is used again soon.
MAX_WAIT_SECONDS = 30.0
# A delivery not seen parking for this long is no longer counted as waiting (it was sent, maybe
# by another worker).
WAITING_WINDOW_SECONDS = 60.0
# A delivery that parked this recently may not be back in the queue yet (arq moves it on after the
# job returns): waking it now would be lost, so an older one is woken.
SETTLE_SECONDS = 0.1

_rng = random.Random()


class ChannelSlots:
    """The per-channel send slots of one worker process (one asyncio loop: no locks needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: Counter[str] = Counter()
        self._waiting: dict[str, dict[str, float]] = {}

    def take(self, channel: str, delivery_id: str) -> bool:
        """Take a slot on ``channel`` for this delivery; False (and it counts as waiting) if full."""
        waiting = self._waiting.setdefault(channel, {})
        if self._busy[channel] >= self.limit:
            waiting[delivery_id] = time.monotonic()
            return False
        waiting.pop(delivery_id, None)
        self._busy[channel] += 1
        return True

    def give_back(self, channel: str) -> str | None:
        """Free a slot; answers the delivery to wake: the one waiting longest, if any."""
        self._busy[channel] -= 1
        waiting = self._waiting.get(channel, {})
        settled = time.monotonic() - SETTLE_SECONDS
        for delivery_id, seen in waiting.items():
            if seen <= settled:
                del waiting[delivery_id]
                return delivery_id
        return None

    def busy(self, channel: str) -> int:
        return self._busy[channel]

    def wait_delay(self, channel: str) -> float:
        """Seconds a parked delivery waits before it tries for a slot again.

        About one second per ``limit`` deliveries waiting (so the waiters together come back at
        roughly the rate slots can free up), jittered so they do not come back together, capped.
        """
        waiting = self._waiting.get(channel, {})
        cutoff = time.monotonic() - WAITING_WINDOW_SECONDS
        for delivery_id in [d for d, seen in waiting.items() if seen < cutoff]:
            del waiting[delivery_id]
        rounds = max(1.0, len(waiting) / self.limit)
        return min(MAX_WAIT_SECONDS, rounds * _rng.uniform(1.0, 2.0))


async def park(redis: ArqRedis, job_id: str, delay: float) -> None:
    """Undo this start's count on arq's try counter and keep the job alive while it waits.

    The caller then raises ``Retry(defer=delay)``: arq moves the job ``delay`` seconds on.
    """
    async with redis.pipeline(transaction=True) as pipe:
        pipe.decr(retry_key_prefix + job_id)
        pipe.pexpire(job_key_prefix + job_id, int(delay * 1000) + expires_extra_ms)
        await pipe.execute()


async def wake(redis: ArqRedis, queue_name: str, job_id: str) -> None:
    """Make a parked job due now: only if it is still queued, and never later than it was due.

    Best effort: if Redis does not answer, the job still comes back at its own time.
    """
    try:
        await redis.zadd(queue_name, {job_id: queue_ms()}, xx=True, lt=True)
    except Exception as exc:
        log.debug("could not wake a waiting delivery: %s", type(exc).__name__)
