"""In-process caches of what every request looks up (webhook tokens, API keys, users), each change
told to every process through Redis pub/sub.

Entries carry *tags* (``webhook-token:<hash>``, ``api-key:<id>``, ``user:<id>``). A change calls
``forget(redis, *tags)``: this process drops the tagged entries at once, and one PUBLISH tells
every other process, whose listener (``listen``) drops them too, milliseconds later.

A cache is trusted only while its process hears the channel. The listener pings Redis every
``PING_SECONDS``; a cache whose listener has heard nothing (message or pong) for
``DEAF_SECONDS`` serves nothing and lookups go to Redis and PostgreSQL as without it. When the
subscription is (re)made the caches are emptied first: messages published while the link was
down are lost, so every entry from before is suspect. Each entry also expires ``ttl`` seconds
after it was filled, whatever the channel said: the bound if all of the above failed.

A lookup that started before an invalidation must not store what it read (it may be the value
the change just replaced): ``put`` takes the ``generation`` read before the lookup began and
stores nothing if any invalidation came in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis

log = logging.getLogger("monoduty.cache")

V = TypeVar("V")

CHANNEL = "monoduty:invalidate:"
PING_SECONDS = 0.5
DEAF_SECONDS = 1.5  # three pings unanswered: the link is presumed dead
RETRY_SECONDS = 0.5
MAX_ENTRIES = 10_000

# Every cache of this process: ``forget`` drops locally before it publishes.
_CACHES: weakref.WeakSet[LocalCache[Any]] = weakref.WeakSet()


class Miss:
    __slots__ = ()


MISS = Miss()


class LocalCache(Generic[V]):
    """Key → value for ``ttl`` seconds, dropped by tag; serves only while ``listen`` hears Redis."""

    def __init__(
        self,
        name: str,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.generation = 0
        self.heard = float("-inf")  # when the listener last heard the channel (never yet)
        self._entries: dict[str, tuple[float, V, tuple[str, ...]]] = {}
        self._tagged: dict[str, set[str]] = {}
        _CACHES.add(self)

    def live(self) -> bool:
        return self.clock() - self.heard < DEAF_SECONDS

    def get(self, key: str) -> V | Miss:
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        expires, value, _ = entry
        if self.clock() >= expires or not self.live():
            return MISS
        return value

    def put(self, key: str, value: V, tags: Iterable[str], generation: int) -> None:
        """Store, unless an invalidation came after ``generation`` was read or the link is down."""
        if generation != self.generation or not self.live():
            return
        if len(self._entries) >= self.max_entries and key not in self._entries:
            self.clear()  # rare (that many live keys or webhooks): a refill is cheap
        tags = tuple(tags)
        self._untag(key)
        self._entries[key] = (self.clock() + self.ttl, value, tags)
        for tag in tags:
            self._tagged.setdefault(tag, set()).add(key)

    def drop(self, tag: str) -> None:
        self.generation += 1
        for key in self._tagged.pop(tag, ()):
            self._untag(key)
            self._entries.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._tagged.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _untag(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        for tag in entry[2]:
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tagged[tag]


def channel(redis: Redis) -> str:
    """The channel of this Redis database: PUBLISH is server-wide, databases are not."""
    return CHANNEL + str(redis.connection_pool.connection_kwargs.get("db", 0))


async def forget(redis: Redis, *tags: str, delete: Iterable[str] = ()) -> None:
    """Drop ``tags`` here and in every process, deleting the Redis keys ``delete`` (a shared cache
    behind the local ones) in the same round trip, before the message goes out."""
    _drop_here(tags)
    async with redis.pipeline(transaction=False) as pipe:
        keys = list(delete)
        if keys:
            pipe.delete(*keys)
        for tag in tags:
            pipe.publish(channel(redis), tag)
        await pipe.execute()
    # Again: a lookup here may have read the shared cache before the DELETE and stored it since.
    _drop_here(tags)


def _drop_here(tags: Iterable[str]) -> None:
    for cache in list(_CACHES):
        for tag in tags:
            cache.drop(tag)


async def listen(redis: Redis, caches: Iterable[LocalCache[Any]]) -> None:
    """Keep ``caches`` told of every change until cancelled; reconnects after any failure."""
    caches = list(caches)
    name = channel(redis)
    lost = [False]  # said once per outage, not at every retry
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(name)
                await _hear(pubsub, caches, lost)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away or the link cut: caches go deaf, then empty
            level = logging.DEBUG if lost[0] else logging.WARNING
            lost[0] = True
            what = type(exc).__name__
            log.log(level, "cache invalidation channel lost (%s); lookups bypass the cache", what)
            for cache in caches:
                cache.heard = float("-inf")
                cache.clear()
        await asyncio.sleep(RETRY_SECONDS)  # a retry's pace, not a synchronisation


async def _hear(pubsub: Any, caches: list[LocalCache[Any]], lost: list[bool]) -> None:
    subscribed = False
    pinged = 0.0
    while True:
        message = await pubsub.get_message(timeout=PING_SECONDS / 2)
        now = time.monotonic()
        if message is not None:
            kind = message["type"]
            if kind == "subscribe" and not subscribed:
                subscribed = True
                if lost[0]:
                    lost[0] = False
                    log.info("cache invalidation channel back; caches emptied")
                for cache in caches:
                    cache.clear()  # what came before the subscription may have been missed
            if subscribed and kind in ("subscribe", "message", "pong"):
                for cache in caches:
                    cache.heard = cache.clock()
            if kind == "message":
                data = message["data"]
                tag = data.decode() if isinstance(data, bytes) else str(data)
                for cache in caches:
                    cache.drop(tag)
        if subscribed and now - pinged >= PING_SECONDS:
            pinged = now
            await pubsub.ping()
