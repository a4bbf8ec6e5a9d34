"""Live changes of incidents, for the dashboard's open pages (Server-Sent Events).

One mechanism: PostgreSQL LISTEN/NOTIFY. ``engine.incidents.events.add_event`` (which every change
of an incident goes through, in the API and in the workers alike) NOTIFYs ``CHANNEL`` with the
incident's team and id, delivered when its transaction commits. Each API process holds one
listening connection (opened when the first page subscribes) and hands each change to the
subscribers of that team. A lost connection is opened again with backoff; every subscriber then
gets a ``RESYNC`` change, since it may have missed some, and refreshes what it shows. Nothing
else is kept: a change is a hint to read again, never the data itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

from engine.errors import STORAGE_DOWN

log = logging.getLogger("monoduty.live")

CHANNEL = "monoduty_incidents"
RESYNC = "resync"  # the kind of a change that says "read everything again"
CLOSED = "closed"  # the feed is closing (the server stops): subscribers end their streams
# How often an idle listening connection is checked (a dead TCP peer says nothing by itself).
PING_SECONDS = 15.0
MAX_BACKOFF = 30.0
QUEUE_SIZE = 100


@dataclass(frozen=True)
class Change:
    team_id: uuid.UUID | None  # None: a RESYNC, for every subscriber
    incident_id: uuid.UUID | None
    kind: str


def parse(payload: str) -> Change | None:
    try:
        data = json.loads(payload)
        return Change(uuid.UUID(data["team_id"]), uuid.UUID(data["incident_id"]), str(data["kind"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed notification on %s", CHANNEL)
        return None


class Subscription:
    """The changes of some teams, in order; ``RESYNC`` when some may have been lost."""

    def __init__(self, feed: Feed, team_ids: Collection[uuid.UUID]) -> None:
        self._feed = feed
        self.team_ids = frozenset(team_ids)
        self._queue: asyncio.Queue[Change] = asyncio.Queue(QUEUE_SIZE)

    def offer(self, change: Change) -> None:
        if change.team_id is not None and change.team_id not in self.team_ids:
            return
        if self._queue.full() and change.kind != CLOSED:  # a reader this far behind refreshes everything
            while not self._queue.empty():
                self._queue.get_nowait()
            change = Change(None, None, RESYNC)
        elif self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(change)

    async def next(self, within: float) -> Change | None:
        """The next change, or None after ``within`` seconds without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._feed.unsubscribe(self)


class Feed:
    """One process's listening connection and its subscribers."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def subscribe(self, team_ids: Collection[uuid.UUID], *, wait: float = 5.0) -> Subscription:
        """A subscription to the teams' changes; waits up to ``wait`` seconds for the connection to
        listen, so that a change committed after this returns is not missed."""
        subscription = Subscription(self, team_ids)
        self._subscribers.add(subscription)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="incident-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), wait)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def _dispatch(self, change: Change) -> None:
        for subscription in list(self._subscribers):
            subscription.offer(change)

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        change = parse(str(payload))
        if change is not None:
            self._dispatch(change)

    async def _run(self) -> None:
        backoff, connected_before = 0.5, False
        while True:
            try:
                conn = await asyncio.wait_for(asyncpg.connect(self._url), 10)
            except STORAGE_DOWN as exc:
                log.warning("live feed: cannot reach PostgreSQL (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            try:
                await self._listen(conn, resync=connected_before)
                connected_before, backoff = True, 0.5
            except STORAGE_DOWN as exc:
                log.warning("live feed: lost PostgreSQL (%s); listening again", type(exc).__name__)
            finally:
                self.listening.clear()
                conn.terminate()

    async def _listen(self, conn: asyncpg.Connection, *, resync: bool) -> None:
        """Listen until the connection fails a ping (or is closed under us)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._notified)
        self.listening.set()
        if resync:
            self._dispatch(Change(None, None, RESYNC))
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
                continue
            await conn.execute("SELECT 1", timeout=5)

    async def close(self) -> None:
        """Stop listening; every subscriber gets a CLOSED change."""
        for subscription in list(self._subscribers):
            subscription.offer(Change(None, None, CLOSED))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._subscribers.clear()
