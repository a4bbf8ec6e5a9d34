"""engine.local_cache's rules, on an injected clock: what an entry may be served for, and when not."""

from __future__ import annotations

from engine.local_cache import DEAF_SECONDS, MISS, LocalCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _heard(clock: Clock) -> LocalCache[str]:
    cache: LocalCache[str] = LocalCache("test", 10.0, clock=clock)
    cache.heard = clock.now  # as the listener does on each message or pong
    return cache


def test_an_entry_is_served_until_its_ttl() -> None:
    clock = Clock()
    cache = _heard(clock)
    cache.put("k", "v", ("tag",), cache.generation)
    assert cache.get("k") == "v"
    clock.now += 9.9
    cache.heard = clock.now
    assert cache.get("k") == "v"
    clock.now += 0.1
    cache.heard = clock.now
    assert cache.get("k") is MISS


def test_nothing_is_served_or_stored_while_the_channel_is_not_heard() -> None:
    clock = Clock()
    cache: LocalCache[str] = LocalCache("test", 10.0, clock=clock)
    cache.put("k", "v", (), cache.generation)  # never subscribed yet
    assert len(cache) == 0
    cache.heard = clock.now
    cache.put("k", "v", (), cache.generation)
    clock.now += DEAF_SECONDS  # no pong for that long: the link may be dead, a change missed
    assert cache.get("k") is MISS
    cache.heard = clock.now
    assert cache.get("k") == "v"


def test_a_tag_drops_every_entry_carrying_it_and_only_those() -> None:
    clock = Clock()
    cache = _heard(clock)
    cache.put("key-1", "alice", ("api-key:1", "user:a"), cache.generation)
    cache.put("key-2", "alice", ("api-key:2", "user:a"), cache.generation)
    cache.put("key-3", "bob", ("api-key:3", "user:b"), cache.generation)
    cache.drop("api-key:1")
    assert [cache.get(k) for k in ("key-1", "key-2", "key-3")] == [MISS, "alice", "bob"]
    cache.drop("user:a")
    assert [cache.get(k) for k in ("key-1", "key-2", "key-3")] == [MISS, MISS, "bob"]


def test_a_lookup_begun_before_a_change_stores_nothing() -> None:
    """It may have read the value the change replaced."""
    clock = Clock()
    cache = _heard(clock)
    before = cache.generation
    cache.drop("webhook-token:abc")  # the change's message arrives while the lookup is out
    cache.put("abc", "ACTIVE", ("webhook-token:abc",), before)
    assert cache.get("abc") is MISS


def test_the_size_is_bounded() -> None:
    clock = Clock()
    cache: LocalCache[int] = LocalCache("test", 10.0, max_entries=3, clock=clock)
    cache.heard = clock.now
    for n in range(10):
        cache.put(str(n), n, (f"t{n}",), cache.generation)
        assert len(cache) <= 3
    assert cache.get("9") == 9
