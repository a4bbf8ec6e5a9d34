"""Scenario 8 of issue 17, a rolling restart under supervisord: its run, its figures and its artefact.

supervisord runs docker/supervisord.conf as shipped (the API and three workers, `monoduty` on PATH
by a shim) on the session's PostgreSQL and Redis, with the storm's webhooks and providers
(tests/faults/storm.py; every provider answers after ``provider_delay``, so sends are in flight).
While alerts are posted at a steady rate, each worker in turn is restarted with ``supervisorctl
restart`` (SIGTERM: it takes no new job and finishes what it runs within MONODUTY_SHUTDOWN_GRACE),
the next only once the last is RUNNING again, ``passes`` times over. Then the backlog drains and
the run is judged as the storm is (lost, missing, duplicates at the providers, counters), plus the
deliveries recorded possibly_duplicated (a graceful stop leaves none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg

from tests.faults.storm import (
    KEY_OF_CHANNEL,
    Sender,
    StormFigures,
    TimedSmtp,
    create_webhooks,
    judge,
    provider_arrivals,
    unfinished,
    worker_env,
)
from tests.support.factories import Account
from tests.support.processes import ROOT, ApiProcess, dies_with_us, free_port, monoduty_env, wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services

SUPERVISORD_CONF = ROOT / "docker" / "supervisord.conf"
WORKERS = 3
SHUTDOWN_GRACE = 10


@dataclass(frozen=True)
class RollingSize:
    name: str
    alerts: int
    rate: float
    passes: int  # each worker restarted this many times, one at a time
    provider_delay: float = 0.2
    drain_timeout: float = 120.0


@dataclass
class RollingFigures:
    storm: StormFigures
    restarts: int = 0
    restart_seconds: list[float] = field(default_factory=list)  # supervisorctl restart, each
    possibly_duplicated: int = 0
    sends_after_finish: list[str] = field(default_factory=list)  # a provider got it after it was recorded
    problems: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return self.storm.sound and not self.sends_after_finish and not self.problems


@dataclass(frozen=True)
class Api:
    """The API supervisord runs: what storm's helpers use of an ApiProcess."""

    url: str


class Supervisor:
    """supervisord on docker/supervisord.conf; ``ctl`` runs supervisorctl against it."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        bin_dir = Path(sys.executable).parent
        self.supervisord, self.supervisorctl = bin_dir / "supervisord", bin_dir / "supervisorctl"
        shim = folder / "bin" / "monoduty"  # `monoduty` on PATH, as an installed package provides
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m monoduty "$@"\n')
        shim.chmod(0o755)
        self.port = free_port()
        self.env = monoduty_env(
            **env,
            PATH=f"{shim.parent}:{monoduty_env()['PATH']}",
            MONODUTY_WORKERS=str(WORKERS),
            MONODUTY_API_PORT=str(self.port),
            MONODUTY_RUN_DIR=str(folder),
            MONODUTY_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE),
            MONODUTY_LOG_FORMAT="json",
        )
        self.log = folder / "supervisord.log"
        self.conf = ["-c", str(SUPERVISORD_CONF)]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(self.supervisord),
                *self.conf,
                env=self.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=dies_with_us(signal.SIGTERM),  # it stops its workers; a SIGKILL would orphan them
            )

    async def ctl(self, *args: str) -> tuple[int, str]:
        ctl = await asyncio.create_subprocess_exec(
            str(self.supervisorctl), *self.conf, *args, env=self.env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await ctl.communicate()
        return ctl.returncode or 0, out.decode()

    async def running(self) -> int:
        code, out = await self.ctl("status")
        return out.count("RUNNING") if code in (0, 3) else 0

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        await self.ctl("shutdown")
        try:
            return await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


@contextlib.asynccontextmanager
async def supervised(env: dict[str, str], folder: Path) -> AsyncIterator[Supervisor]:
    supervisor = Supervisor(env, folder)
    await supervisor.start()
    try:
        yield supervisor
    finally:
        code = await supervisor.stop()
        if code not in (None, 0):
            raise AssertionError(f"supervisord exited {code}")


async def run_rolling(
    size: RollingSize,
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake: FakeProviders,
    folder: Path,
) -> RollingFigures:
    """One rolling-restart run of ``size``; its figures (the caller asserts them)."""
    storm = StormFigures(size=asdict(size))
    figures = RollingFigures(storm)
    began = time.monotonic()
    fake.delay = size.provider_delay
    with TimedSmtp() as smtp:
        smtp.delay = size.provider_delay
        # Job and provider timeouts at their defaults (the storm's are shorter, for its re-runs).
        env = {
            **worker_env(services, fake, smtp),
            "MONODUTY_JOB_TIMEOUT": "20",
            "MONODUTY_PROVIDER_TIMEOUT": "10",
        }
        async with supervised(env, folder) as supervisor, aiohttp.ClientSession() as http:
            await wait_until(
                lambda: _at_least(supervisor.running, WORKERS + 1), "the API and 3 workers RUNNING", 90
            )
            api = cast(ApiProcess, Api(f"http://127.0.0.1:{supervisor.port}"))

            async def api_answers() -> bool:
                try:
                    async with http.get(f"{api.url}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(api_answers, "the API to answer", 60)
            webhooks = await create_webhooks(http, api, account)
            sender = Sender(http, api, webhooks)
            deadline = time.monotonic() + size.alerts / size.rate * 3 + 60
            sending = asyncio.create_task(sender.send_all(size.alerts, size.rate, deadline))
            try:
                for _ in range(size.passes):
                    for n in range(WORKERS):
                        started = time.monotonic()
                        code, out = await supervisor.ctl("restart", f"worker:worker-{n:02d}")
                        if code != 0 or "started" not in out:
                            figures.problems.append(f"restart of worker-{n:02d}: {code} {out.strip()}")
                        await wait_until(
                            lambda: _at_least(supervisor.running, WORKERS + 1), "every program RUNNING", 60
                        )
                        figures.restarts += 1
                        figures.restart_seconds.append(round(time.monotonic() - started, 1))
                        storm.kills = figures.restarts
            finally:
                await sending
            ids = [uuid.UUID(a) for a in sender.accepted]
            expected = sum(len(webhooks[i]["target_channels"]) for _, i in sender.accepted.values())
            drained = time.monotonic()
            try:
                await wait_until(
                    lambda: _none(unfinished(pool, ids, expected)), "the backlog to drain", size.drain_timeout
                )
                storm.recovery_s = round(time.monotonic() - drained, 1)
            except AssertionError as exc:
                figures.problems.append(str(exc))
            await judge(storm, pool, http, api, account, webhooks, sender, fake, smtp)
            async with pool.acquire() as conn:
                figures.possibly_duplicated = int(
                    await conn.fetchval(
                        "SELECT count(*) FROM deliveries "
                        "WHERE alert_id = ANY($1::uuid[]) AND possibly_duplicated",
                        ids,
                    )
                )
            figures.sends_after_finish = await sends_after_finish(pool, ids, sender, fake, smtp)
            log = supervisor.log.read_text(errors="replace")
            for line in log.splitlines():
                if "exited" in line and "expected" not in line and "worker" in line:
                    figures.problems.append(f"supervisord: {line.strip()}")
    storm.seconds = round(time.monotonic() - began, 1)
    return figures


async def sends_after_finish(
    pool: asyncpg.Pool, ids: list[uuid.UUID], sender: Sender, fake: FakeProviders, smtp: TimedSmtp
) -> list[str]:
    """Provider arrivals of a delivery after its outcome was recorded: a finished one sent again."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT alert_id, channel, target, extract(epoch FROM finished_at)::float8 AS finished "
            "FROM deliveries WHERE alert_id = ANY($1::uuid[]) AND status = 'delivered'",
            ids,
        )
    finished = {
        (sender.accepted[str(r["alert_id"])][0], KEY_OF_CHANNEL[r["channel"]], r["target"]): r["finished"]
        for r in rows
    }
    late = []
    for tag, channel, target, at in provider_arrivals(fake, smtp):
        done = finished.get((tag, channel, target))
        if done is not None and at > done:
            late.append(f"{tag} {channel} {target}: sent {at - done:.2f}s after it was recorded delivered")
    return late


async def _at_least(count: Any, wanted: int) -> bool:
    return bool(await count() >= wanted)


async def _none(count: Any) -> bool:
    return bool(await count == 0)


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_artefact(results: list[RollingFigures], folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = [{**asdict(r), "sound": r.sound} for r in results]
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Rolling restart under supervisord (issue 17, scenario 8)",
        "",
        f"Written by tests/faults/test_rolling_restart.py, {stamp()}; "
        "a 2-core shared machine. docker/supervisord.conf with the API and 3 workers; each worker "
        "restarted in turn (supervisorctl restart: SIGTERM, graceful) while alerts arrive.",
        "",
        "| run | provider delay | alerts accepted | lost | deliveries | missing | duplicates per 1,000 "
        "| possibly duplicated | finished deliveries sent again | p50 / p99 accept-to-send | restarts (each) "
        "| counters exact | drained after the burst |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.storm
        each = f"{min(r.restart_seconds):g}-{max(r.restart_seconds):g} s" if r.restart_seconds else "-"
        recovery = "never (deadline)" if s.recovery_s is None else f"{s.recovery_s:g} s"
        lines.append(
            f"| {s.size['name']} | {s.size['provider_delay'] * 1000:g} ms | {s.accepted} | {s.lost} | "
            f"{s.deliveries} | {s.missing} | {s.duplicates_per_1000:g} ({s.duplicate_sends}) | "
            f"{r.possibly_duplicated} | {len(r.sends_after_finish)} | "
            f"{s.accept_to_send_p50_ms:g} / {s.accept_to_send_p99_ms:g} ms | "
            f"{r.restarts} ({each}) | {'yes' if s.counters_exact else 'NO'} | {recovery} |"
        )
    for r in results:
        s = r.storm
        problems = (
            r.problems
            + r.sends_after_finish[:20]
            + s.lost_alerts[:20]
            + s.missing_rows[:20]
            + s.counter_mismatches
        )
        if problems:
            lines += ["", f"## {s.size['name']}: what went wrong", "", *[f"- {p}" for p in problems]]
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return folder / f"{stem}.md"
