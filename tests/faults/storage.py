"""Scenarios 3 to 5 of issue 17 break the storage itself, so each run starts its own: a PostgreSQL
cluster (tests.support.faults.PostgresServer) and a redis-server with AOF (RedisServer), never the
machine's. On them run a real `monoduty api` and `monoduty worker`s with the storm's webhooks and
providers (tests/faults/storm.py), a steady stream of alerts, and a plan of faults.

- ``own_storage``: the two servers, a database with the schema, an account, a pool to judge with.
- ``run_under_load``: sends alerts at a steady rate while ``plan`` injects its faults (each one
  marked with ``LoadRun.fault``), waits for the backlog to drain, judges it as the storm does
  (nothing lost or missing, counters equal rows, no worker exit, duplicates at the providers) and
  adds what a sender saw during each fault (statuses, the slowest answer) and how long after it
  accept-to-send took to be back to normal.
- ``write_results``: ``<stem>.json`` and ``<stem>.md`` in the results folder, before any assert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.faults.storm import (
    Sender,
    StormFigures,
    TimedSmtp,
    Workers,
    api_process,
    create_webhooks,
    judge,
    provider_arrivals,
    unfinished,
    worker_env,
)
from tests.support.factories import Account, new_account
from tests.support.faults import AppendFsync, PostgresServer, RedisServer
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services

# The promise a sender is held to while storage is down: an answer (202 or 503 + Retry-After)
# within about 2 s (README, "Redis faults are ridden out").
ANSWER_PROMISE_S = 2.0
# The documented window of an `appendfsync everysec` Redis crash: alerts accepted this long before
# the kill may be lost (README, "An accepted alert is not lost").
EVERYSEC_WINDOW_S = 2.0
# "After recovery, accept-to-send back to normal within 5 s" (issue 17): the alerts accepted this
# long after a fault ended are compared with those before the first fault.
RECOVERY_WINDOW_S = 5.0


@dataclass
class Storage:
    pg: PostgresServer
    redis: RedisServer
    services: Services
    pool: asyncpg.Pool
    account: Account
    database: str = "monoduty"


@contextlib.asynccontextmanager
async def own_storage(
    folder: Path, *, fsync: AppendFsync = "always", statement_timeout: str | None = None
) -> AsyncIterator[Storage]:
    """A PostgreSQL and a Redis of this run's own; ``statement_timeout`` is set on the database
    (as an operator would) before any Monoduty process connects."""
    pg = PostgresServer()
    redis = RedisServer(folder / "redis", aof=True, fsync=fsync)
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(redis.start)
        url = await pg.create_database()
        if statement_timeout:
            conn = await asyncpg.connect(pg.server_url)
            try:
                await conn.execute(f"ALTER DATABASE monoduty SET statement_timeout = '{statement_timeout}'")
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(url, min_size=0, max_size=4)
        try:
            account = await new_account(pool)
            yield Storage(pg, redis, Services(url, redis.url), pool, account)
        finally:
            pool.terminate()
    finally:
        if redis.proc is not None and redis.proc.poll() is None:
            redis.proc.send_signal(18)  # SIGCONT: a failed freeze must not leave it stopped
        redis.stop()
        await asyncio.to_thread(pg.close)


@dataclass
class FaultFigures:
    name: str
    started: float  # epoch
    ended: float
    seconds: float = 0.0
    answers: dict[str, int] = field(default_factory=dict)  # statuses a sender got while it lasted
    slowest_answer_s: float = 0.0
    answers_over_2s: int = 0
    recovery_s: float | None = None  # fault end -> accept-to-send back to normal (None: never seen)
    # Alerts accepted in the RECOVERY_WINDOW_S after it ended: their accept-to-send p50, and that
    # over the same run's p50 before the first fault (1.0: as fast as before; None: none sent).
    after_alerts: int = 0
    after_p50_ms: float | None = None
    after_ratio: float | None = None
    lost: int = 0  # accepted alerts lost, accepted from this fault's start to the next one's
    lost_in_window: int = 0  # of those, accepted within the documented everysec window of a kill


@dataclass
class LoadFigures:
    scenario: str
    storm: StormFigures
    faults: list[FaultFigures] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # every answer a sender got
    slowest_answer_s: float = 0.0
    baseline_p50_ms: float = 0.0  # accept-to-send before the first fault
    normal_ms: float = 0.0  # what counts as back to normal
    notes: list[str] = field(default_factory=list)


class LoadRun:
    """What a fault plan works with: the servers, the workers, the sender; ``fault(name)`` marks one."""

    def __init__(self, storage: Storage, workers: Workers, sender: Sender) -> None:
        self.storage = storage
        self.workers = workers
        self.sender = sender
        self.faults: list[FaultFigures] = []
        self.notes: list[str] = []

    @contextlib.asynccontextmanager
    async def fault(self, name: str) -> AsyncIterator[None]:
        began = time.time()
        yield
        self.faults.append(FaultFigures(name, began, time.time(), round(time.time() - began, 1)))

    async def hold(self, seconds: float) -> None:
        """Let ``seconds`` pass on the plan's timeline, failing early if a worker exits."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            assert not self.workers.died(), self.workers.died()
            await asyncio.sleep(min(0.1, max(0.0, until - time.monotonic())))  # the plan's rhythm


Plan = Callable[[LoadRun], Awaitable[None]]


async def _backlog(storage: Storage, sender: Sender, webhooks: list[dict[str, Any]]) -> int | None:
    expected = sum(len(webhooks[i]["target_channels"]) for _, i in sender.accepted.values())
    try:
        return await asyncio.wait_for(
            unfinished(storage.pool, [uuid.UUID(a) for a in sender.accepted], expected), 5
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await storage.pool.expire_connections()  # the server restarted under them
        return None


async def run_under_load(
    scenario: str,
    storage: Storage,
    fake: FakeProviders,
    folder: Path,
    plan: Plan,
    *,
    seconds: float,
    rate: float,
    workers: int = 2,
    provider_delay: float = 0.05,
    drain_timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> LoadFigures:
    """Alerts at ``rate`` a second for about ``seconds`` while ``plan`` runs; then judge them."""
    size = {"name": scenario, "alerts": int(seconds * rate), "provider_delay": provider_delay, "rate": rate}
    figures = LoadFigures(scenario, StormFigures(size=size))
    began = time.monotonic()
    fake.delay = provider_delay
    with TimedSmtp() as smtp:
        smtp.delay = provider_delay
        settings = {**worker_env(storage.services, fake, smtp), **(env or {})}
        async with api_process(storage.services, settings, folder) as api, aiohttp.ClientSession() as http:
            webhooks = await create_webhooks(http, api, storage.account)
            crew = Workers(settings, folder, random.Random(17), count=workers)
            try:
                for proc in crew.procs:
                    await wait_until(lambda p=proc: "Starting worker" in p.output(), "a worker to start", 60)
                sender = Sender(http, api, webhooks)
                deadline = time.monotonic() + seconds * 3 + 60
                sending = asyncio.create_task(sender.send_all(size["alerts"], rate, deadline))
                run = LoadRun(storage, crew, sender)
                try:
                    await plan(run)
                    await sending
                finally:
                    sending.cancel()
                figures.notes = run.notes
                figures.faults = run.faults
                last_fault = max((f.ended for f in run.faults), default=time.time())
                drained_at: float | None = None
                drain_deadline = time.monotonic() + drain_timeout
                while time.monotonic() < drain_deadline:
                    assert not crew.died(), crew.died()
                    if await _backlog(storage, sender, webhooks) == 0:
                        drained_at = time.time()
                        break
                    await asyncio.sleep(0.2)  # the drain's polling tick
                if drained_at is not None:
                    figures.storm.recovery_s = round(drained_at - last_fault, 1)
                figures.storm.worker_exits = crew.died()
                await storage.pool.expire_connections()
                await judge(
                    figures.storm, storage.pool, http, api, storage.account, webhooks, sender, fake, smtp
                )
                _judge_faults(figures, sender, provider_arrivals(fake, smtp))
            finally:
                exits = await asyncio.to_thread(crew.stop)
                figures.storm.worker_exits += [f"worker exit code {c}" for c in exits if c != 0]
    figures.storm.seconds = round(time.monotonic() - began, 1)
    return figures


def _judge_faults(figures: LoadFigures, sender: Sender, sends: list[tuple[str, str, str, float]]) -> None:
    """Per fault: what senders got while it lasted, the alerts lost from it on, and how soon after
    it accept-to-send (each delivery's first arrival at its provider) was back to normal."""
    figures.statuses = dict(Counter(status for _, _, status in sender.answers))
    figures.slowest_answer_s = round(max((s for _, s, _ in sender.answers), default=0.0), 2)
    # An alert's accept-to-send: its 202 to the arrival of the last of its deliveries' first sends.
    firsts: dict[str, dict[tuple[str, str], float]] = {}
    for tag, channel, target, at in sends:
        per = firsts.setdefault(tag, {})
        per[(channel, target)] = min(at, per.get((channel, target), at))
    latency = {
        alert_id: max(firsts[tag].values()) - sender.accepted_at[alert_id]
        for alert_id, (tag, _) in sender.accepted.items()
        if tag in firsts
    }
    faults = sorted(figures.faults, key=lambda f: f.started)
    start = faults[0].started if faults else float("inf")
    before = [latency[a] for a, t in sender.accepted_at.items() if t < start and a in latency]
    baseline = statistics.median(before) if before else 0.0
    figures.baseline_p50_ms = round(baseline * 1000, 1)
    # Back to normal: within three times the quiet accept-to-send, and never under half a second
    # (a loaded 2-core machine's jitter).
    normal = max(3 * baseline, 0.5)
    figures.normal_ms = round(normal * 1000)
    lost_ids = {line.split()[0] for line in figures.storm.lost_alerts}
    for n, fault in enumerate(faults):
        upto = faults[n + 1].started if n + 1 < len(faults) else float("inf")
        during = [a for a in sender.answers if fault.started <= a[0] <= fault.ended]
        fault.answers = dict(Counter(status for _, _, status in during))
        fault.slowest_answer_s = round(max((s for _, s, _ in during), default=0.0), 2)
        fault.answers_over_2s = sum(1 for _, s, _ in during if s > ANSWER_PROMISE_S)
        # Lost from this fault on: accepted from just before it (the everysec window) to the next.
        lost = [sender.accepted_at[a] for a in lost_ids if a in sender.accepted_at]
        fault.lost = sum(1 for t in lost if fault.started - EVERYSEC_WINDOW_S <= t < upto)
        fault.lost_in_window = sum(1 for t in lost if fault.started - EVERYSEC_WINDOW_S <= t <= fault.ended)
        # Up to 2 s before the next fault: an alert accepted just before it waits out that one.
        until = upto - EVERYSEC_WINDOW_S
        after = sorted(
            (t, latency.get(a, float("inf")))
            for a, t in sender.accepted_at.items()
            if fault.ended <= t < until
        )
        fault.recovery_s = _back_to_normal(after, fault.ended, normal)
        soon = min(fault.ended + RECOVERY_WINDOW_S, upto)  # not into the next fault
        accepted = sender.accepted_at.items()
        window = [latency[a] for a, t in accepted if fault.ended <= t < soon and a in latency]
        fault.after_alerts = len(window)
        if window:
            fault.after_p50_ms = round(statistics.median(window) * 1000, 1)
            fault.after_ratio = round(statistics.median(window) / baseline, 2) if baseline else None


def _back_to_normal(after: list[tuple[float, float]], ended: float, normal: float) -> float | None:
    """Seconds from ``ended`` to the 202 of the first alert from which on every one accepted was
    sent within ``normal`` (None: not within the alerts seen before the next fault)."""
    if not after:
        return None
    ok_from: float | None = None
    for accepted, latency in after:
        if latency > normal:
            ok_from = None
        elif ok_from is None:
            ok_from = accepted
    return None if ok_from is None else round(max(0.0, ok_from - ended), 1)


def write_results(results: list[LoadFigures], folder: Path, stem: str, title: str, about: str) -> Path:
    """``stem``.json (every figure, the failing rows included) and ``stem``.md (the tables)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = [{**asdict(r), "sound": r.storm.sound} for r in results]
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# {title}", "", f"Written by tests/faults/, {when}; a 2-core shared machine. {about}", ""]
    lines += [
        "| run | alerts accepted | lost | deliveries | missing | duplicates per 1,000 | counters exact "
        "| worker exits | backlog drained after the last fault | slowest answer | answers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.storm
        drained = "never (deadline)" if s.recovery_s is None else f"{s.recovery_s:g} s"
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
        lines.append(
            f"| {r.scenario} | {s.accepted} | {s.lost} | {s.deliveries} | {s.missing} | "
            f"{s.duplicates_per_1000:g} ({s.duplicate_sends}) | {'yes' if s.counters_exact else 'NO'} | "
            f"{len(s.worker_exits)} | {drained} | {r.slowest_answer_s:g} s | {answers} |"
        )
    for r in results:
        lines += [
            "",
            f"## {r.scenario}: each fault (accept-to-send before the first: p50 {r.baseline_p50_ms:g} ms; "
            f"back to normal: within {r.normal_ms:g} ms)",
            "",
            "| fault | lasted | answers meanwhile | slowest answer | answers over 2 s | lost (in the window) "
            "| accept-to-send back to normal after | accept-to-send p50 in the 5 s after (x before) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in r.faults:
            back = "not seen" if f.recovery_s is None else f"{f.recovery_s:g} s"
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(f.answers.items())) or "none"
            soon = "none sent" if f.after_p50_ms is None else f"{f.after_p50_ms:g} ms"
            if f.after_ratio is not None:
                soon += f" (x{f.after_ratio:g}, {f.after_alerts} alerts)"
            lines.append(
                f"| {f.name} | {f.seconds:g} s | {answers} | {f.slowest_answer_s:g} s | {f.answers_over_2s} "
                f"| {f.lost} ({f.lost_in_window}) | {back} | {soon} |"
            )
        problems = r.storm.lost_alerts[:20] + r.storm.missing_rows[:20] + r.storm.counter_mismatches
        problems += r.storm.worker_exits + r.notes
        if problems:
            lines += ["", f"### {r.scenario}: notes and what went wrong", "", *[f"- {p}" for p in problems]]
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return folder / f"{stem}.md"


def out_folder(tmp_path: Path) -> Path:
    """Where a run writes its figures: ``MONODUTY_FAULTS_OUT`` (tests/faults/run sets it) or tmp."""
    return Path(os.environ.get("MONODUTY_FAULTS_OUT") or tmp_path / "faults")


def full_wanted() -> bool:
    return os.environ.get("MONODUTY_FAULTS") == "full"


def assert_sound(figures: LoadFigures, *, lost_allowed: int = 0) -> None:
    """Nothing lost or missing (beyond ``lost_allowed``, the documented window), counters exact,
    workers alive, every answer a 202 or a 503 with Retry-After (never a 500, never a hang)."""
    s = figures.storm
    assert s.accepted == s.size["alerts"], s.refused
    assert len(s.lost_alerts) <= lost_allowed, s.lost_alerts[:20]
    assert len(s.missing_rows) <= lost_allowed * 3, s.missing_rows[:20]
    assert s.counter_mismatches == []
    assert s.worker_exits == [], s.worker_exits
    assert s.recovery_s is not None, "the backlog did not drain before the deadline"
    assert set(figures.statuses) <= {"202", "503"}, figures.statuses
    assert "503 without Retry-After" not in s.refused, s.refused
