"""The benchmark suite of issue 16: each figure beside a baseline measured in the same run.

    bench/run suite [--runs 3] [--ingest-seconds 10] [--latency-seconds 60] [--fanout-alerts 500]
                    [--out bench/RESULTS.md] [--smoke]

Starts what it needs on 127.0.0.1: PostgreSQL and Redis as the tests do (tests/support/services.py:
the ``MONODUTY_TEST_*`` servers, else embedded ones), local Twilio/ntfy (tests/support/providers.py)
and SMTP servers answering after a configurable delay, one `monoduty api` and one `monoduty worker`
process at their defaults, and load from ``wrk``. Baseline and subject runs alternate, so that drift
in a shared machine's load hits both alike; every figure is the median of ``--runs`` runs.

Settings changed from the defaults, and why: the inbound rate limit (120 a minute per webhook would
refuse nearly all the load) and the noise caps (tests/support/processes.UNCAPPED: thousands of
distinct alerts a minute would otherwise wait for a digest, and no page would be measured).

1. Ingest: wrk, 64 connections, round-robin over 50 webhooks, against `monoduty api` (no worker)
   and against bench/bare_endpoint.py (aiohttp parsing the same JSON on the same event loop).
   Accepted alerts/s, errors, and the jobs counted in Redis afterwards; then p99 of both paced
   at half the rate `monoduty api` reached.
2. Accept -> provider: wrk paced at ``--latency-rate`` alerts/s to one webhook with 4 channels
   (email, SMS, push, call), providers answering at once; delivered_at - received_at of every
   delivery, from PostgreSQL. Baseline: arq's own pick-up latency (enqueue -> start) of a no-op
   job at the same rate, same worker settings (bench/arq_noop.py).
3. Fan-out: ``--fanout-alerts`` alerts queued, then one `monoduty worker` started, providers
   answering after 50 ms; deliveries/s from the first alert stored to the last delivery. Baseline:
   arq draining as many no-op jobs with the same worker settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import deserialize_result

from bench.arq_noop import NOOP
from bench.reads import load as load_reads
from engine import db, queue
from engine.alerts import call_counts
from engine.auth.users import create_user
from engine.webhooks import WebhookInput, create_webhook
from monoduty import loops
from tests.support.processes import ROOT, UNCAPPED, free_port, monoduty_env, start_monoduty, wait_for
from tests.support.providers import NTFY_TOKEN, TWILIO_SID, TWILIO_TOKEN, FakeProviders, SmtpServer
from tests.support.services import Services, provision

WEBHOOKS = 50
CONNECTIONS = 64
NOOP_QUEUE = "bench:noop"
# BENCH_PROFILE=DIR: the API and worker processes run under cProfile, their profiles written there.
PROFILE_DIR = os.environ.get("BENCH_PROFILE", "")
CHANNELS = {
    "EMAIL": ("email", "oncall@example.com"),
    "SMS": ("sms", "+14155550123"),
    "PUSH_NOTIF": ("push", "bench-topic"),
    "CALL": ("call", "+14155550124"),
}
DELIVERY_TIMES = """
SELECT extract(epoch FROM d.delivered_at - a.received_at) * 1000 AS ms
FROM deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE a.webhook_id = $1 AND d.status = 'delivered'
"""
COUNT_DELIVERED = """
SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE a.webhook_id = $1 AND d.status = 'delivered'
"""
FANOUT_WINDOW = """
SELECT extract(epoch FROM max(d.delivered_at) - min(a.processed_at)) AS seconds
FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE a.webhook_id = $1
"""
# Exact: what the API reads (the outcomes not yet moved into the row included).
COUNTERS = f"SELECT {call_counts.COLUMNS} FROM webhooks WHERE id = $1"

# The end of every wrk script: its summary as one JSON line (read by ``run_wrk``).
WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
# POSTs round-robin over the tokens; ``body`` is a Lua expression (it may use id and counter).
WRK_LUA = """
local tokens = {%(tokens)s}
local counter = 0
local id = 0
local headers = {["Content-Type"] = "application/json"}
local pause = %(delay)d
function setup(thread)
  thread:set("id", %(thread_ids)s)
end
function init(args)
  id = wrk.thread:get("id") or 0
end
function request()
  counter = counter + 1
  local token = tokens[(counter %% #tokens) + 1]
  local body = %(body)s
  return wrk.format("POST", "/" .. token, headers, body)
end
%(delay_fn)s
"""
# GETs round-robin over the paths with an API key (scenario 6).
WRK_GET = """
local paths = {%(paths)s}
local counter = 0
local pause = %(delay)d
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %(key)s"
function request()
  counter = counter + 1
  return wrk.format(nil, paths[(counter %% #paths) + 1])
end
%(delay_fn)s
"""
WRK_DELAY = "function delay()\n  return pause\nend"


@dataclass
class Figure:
    """One row of RESULTS.md: Monoduty's median beside the baseline's, from runs that alternated."""

    scenario: str
    name: str
    unit: str
    subject: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    target: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if not self.subject or not self.baseline:
            return None
        base = statistics.median(self.baseline)
        return statistics.median(self.subject) / base if base else None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # scenario -> seconds it took
    # CPU seconds per alert by process kind (API, worker, Redis, PostgreSQL), one dict per measure.
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def figure(self, scenario: str, name: str) -> Figure:
        return next(f for f in self.figures if f.scenario == scenario and f.name == name)


# ---------------------------------------------------------------- /proc

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process of this machine, in seconds (0.0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process, in MB (0.0 once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("VmRSS:")), 0.0)


CpuSnapshot = dict[str, dict[int, float]]  # process kind -> pid -> CPU seconds so far


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds each kind spent between two snapshots (a process new since ``before`` counts
    from zero: it started in between)."""
    return {
        kind: sum(max(0.0, spent - before.get(kind, {}).get(pid, 0.0)) for pid, spent in pids.items())
        for kind, pids in after.items()
    }


# ---------------------------------------------------------------- processes and load


class Process:
    """A background process of the bench (api, worker, a baseline), its output in a log file."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _listening(process: Process, port: int) -> bool:
    if not process.alive():
        raise RuntimeError(f"{process.name} exited: {process.log.read_text()[-2000:]}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_python(name: str, module: str, *args: str, env: dict[str, str], folder: Path) -> Process:
    log = folder / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    return Process(name, proc, log)


def start_api(env: dict[str, str], folder: Path) -> tuple[Process, int]:
    """`monoduty api` on a free port (not waited for: see ``listening``)."""
    port = free_port()
    log = folder / "api.log"
    argv = ("api", "--host", "127.0.0.1", "--port", str(port))
    if PROFILE_DIR:
        out = str(Path(PROFILE_DIR) / f"api-{uuid.uuid4().hex[:6]}.prof")
        return start_python(
            "monoduty api", "cProfile", "-o", out, "-m", "monoduty", *argv, env=env, folder=folder
        ), port
    return Process("monoduty api", start_monoduty(*argv, env=env, log=log), log), port


def start_bare(folder: Path) -> tuple[Process, int]:
    port = free_port()
    argv = ("--port", str(port), "--loop", loops.NAME)
    return start_python(
        "bare endpoint", "bench.bare_endpoint", *argv, env=monoduty_env(), folder=folder
    ), port


def listening(process: Process, port: int) -> str:
    wait_for(lambda: _listening(process, port), f"{process.name} to listen", timeout=60)
    return f"http://127.0.0.1:{port}"


def start_worker(env: dict[str, str], folder: Path) -> Process:
    log = folder / f"worker-{uuid.uuid4().hex[:6]}.log"
    if PROFILE_DIR:  # cProfile of the whole worker process, written when it stops
        out = Path(PROFILE_DIR) / f"worker-{uuid.uuid4().hex[:6]}.prof"
        return start_python(
            "monoduty worker", "cProfile", "-o", str(out), "-m", "monoduty", "worker", env=env, folder=folder
        )
    return Process("monoduty worker", start_monoduty("worker", env=env, log=log), log)


async def started(workers: list[Process]) -> None:
    """Until each worker has logged arq's start line (it polls the queue from then on)."""

    async def ready() -> bool:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited: {worker.log.read_text()[-2000:]}")
        return all("Starting worker" in w.log.read_text(errors="replace") for w in workers)

    await wait_until(ready, "the workers to start", seconds=120)


def start_noop_worker(env: dict[str, str], folder: Path) -> Process:
    return start_python("arq no-op worker", "bench.arq_noop", NOOP_QUEUE, env=env, folder=folder)


def wrk_path() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if found is None:
        raise SystemExit("bench: wrk is needed (Debian: apt-get install wrk)")
    return found


def default_body(tag: str) -> str:
    """A distinct alert per request (its title carries the connection and the request's number)."""
    return f"""'{{"title":"bench {tag} ' .. id .. '-' .. counter .. '","message":"from wrk"}}'"""


async def wrk(
    url: str,
    tokens: list[str],
    seconds: float,
    folder: Path,
    *,
    connections: int = CONNECTIONS,
    delay_ms: int = 0,
    tag: str = "",
    body: str = "",
    until: Callable[[], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """One wrk run (one thread; POSTs round-robin over ``tokens``); its summary as a dict, with
    ``rate`` (completed requests per second) and ``errors`` (socket errors and non-2xx answers)."""
    script = WRK_LUA % {
        "tokens": ", ".join(json.dumps(t) for t in tokens),
        "delay": delay_ms,
        "delay_fn": WRK_DELAY if delay_ms else "",
        "thread_ids": "1",
        "body": body or default_body(tag or uuid.uuid4().hex[:6]),
    }
    return await run_wrk(url, script, seconds, folder, connections=connections, until=until)


async def wrk_get(
    url: str, paths: list[str], key: str, seconds: float, folder: Path, *, connections: int, delay_ms: int
) -> dict[str, Any]:
    """One wrk run of GETs with an API key, each connection pausing ``delay_ms`` between requests."""
    script = WRK_GET % {
        "paths": ", ".join(json.dumps(p) for p in paths),
        "key": key,
        "delay": delay_ms,
        "delay_fn": WRK_DELAY if delay_ms else "",
    }
    return await run_wrk(url, script, seconds, folder, connections=connections)


async def run_wrk(
    url: str,
    script_text: str,
    seconds: float,
    folder: Path,
    *,
    connections: int,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """wrk for ``seconds``, or until ``until()`` is true (checked every 0.2 s; wrk stops on SIGINT
    and prints its summary of what it did so far)."""
    script = folder / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(script_text + WRK_DONE)
    duration = max(1, round(seconds))
    proc = await asyncio.create_subprocess_exec(
        wrk_path(),
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    communicate = asyncio.ensure_future(proc.communicate())
    while until is not None and not communicate.done():
        if await until():
            proc.send_signal(signal.SIGINT)
            break
        await asyncio.wait([communicate], timeout=0.2)
    out, _ = await communicate
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text}")
    summary: dict[str, Any] = json.loads(line[4:])
    summary["rate"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["errors"] = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    return summary


# ---------------------------------------------------------------- data


async def new_webhooks(
    pool: asyncpg.Pool, count: int, channels: list[str], *, dedup_by: str = "none"
) -> list[tuple[str, str]]:
    """``count`` webhooks of a fresh user paging ``channels``, by default every alert its own
    incident: (id, token)."""
    async with pool.acquire() as conn:
        user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com", phone="+14155550100")
        made = []
        for n in range(count):
            body = WebhookInput(
                name=f"bench {n}",
                notification_types=channels,
                target_channels={CHANNELS[c][0]: CHANNELS[c][1] for c in channels},
                dedup_by=dedup_by,
            )
            row = await create_webhook(conn, user, body, set(CHANNELS))
            made.append((str(row["id"]), str(row["token"])))
        return made


async def noop_results(redis: ArqRedis, job_ids: list[str]) -> list[Any]:
    """arq's results of these jobs (those that finished), read in pipelines."""
    results = []
    for start in range(0, len(job_ids), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids[start : start + 500]:
                pipe.get(result_key_prefix + job_id)
            raws = await pipe.execute()
        results += [deserialize_result(r, deserializer=queue.deserialize) for r in raws if r is not None]
    return results


async def wait_until(condition: Any, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:g} s waiting for {what}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- scenarios


@dataclass
class Bench:
    services: Services
    folder: Path
    options: argparse.Namespace
    pool: asyncpg.Pool
    redis: ArqRedis
    noop: ArqRedis
    env: dict[str, str]
    providers: FakeProviders
    smtp: DelayedSmtp
    report: Report
    api: Process | None = None
    api_url: str = ""
    workers: list[Process] = field(default_factory=list)

    async def ingest(self, api_url: str, bare_url: str) -> None:
        """Scenario 1 (no worker running: the jobs stay in Redis to be counted)."""
        opts, report = self.options, self.report
        accepted = Figure(
            "1",
            "accepted alerts/s, 64 connections, 50 webhooks",
            "alerts/s",
            baseline_name="bare aiohttp JSON endpoint",
            target="≥ 0.35x",
        )
        p99 = Figure(
            "1",
            "p99 at half that rate",
            "ms",
            baseline_name="bare endpoint, same pacing",
            target="≤ 15 ms",
            higher_is_better=False,
        )
        report.figures += [accepted, p99]
        tokens = [t for _, t in await new_webhooks(self.pool, WEBHOOKS, ["EMAIL"])]
        if opts.warmup:
            await wrk(bare_url, tokens, opts.warmup, self.folder)
            await wrk(api_url, tokens, opts.warmup, self.folder)
        errors = 0
        for _ in range(opts.runs):
            base = await wrk(bare_url, tokens, opts.ingest_seconds, self.folder)
            before = await self.redis.zcard(queue.default_queue_name)
            ours = await wrk(api_url, tokens, opts.ingest_seconds, self.folder)
            counted = await self.redis.zcard(queue.default_queue_name) - before
            errors += ours["errors"] + base["errors"]
            # wrk counts answered requests; the ones in flight when it stopped may be queued too.
            if not ours["requests"] <= counted <= ours["requests"] + CONNECTIONS:
                raise RuntimeError(f"{ours['requests']} alerts answered 202 but {counted} jobs in Redis")
            report.checks.append(
                f"1: {ours['requests']} alerts answered 202, {counted} jobs counted in Redis, "
                f"{ours['errors']} errors (bare endpoint: {base['errors']})"
            )
            accepted.subject.append(ours["rate"])
            accepted.baseline.append(base["rate"])
            # Half the rate just measured, each connection sending about 10 a second.
            half = ours["rate"] / 2
            paced_connections = max(1, min(CONNECTIONS, round(half / 10)))
            delay = max(1, round(paced_connections * 1000 / half))
            paced_base = await wrk(
                bare_url,
                tokens,
                opts.ingest_seconds,
                self.folder,
                connections=paced_connections,
                delay_ms=delay,
            )
            paced = await wrk(
                api_url,
                tokens,
                opts.ingest_seconds,
                self.folder,
                connections=paced_connections,
                delay_ms=delay,
            )
            errors += paced["errors"] + paced_base["errors"]
            p99.subject.append(paced["p99_us"] / 1000)
            p99.baseline.append(paced_base["p99_us"] / 1000)
        if errors:
            raise RuntimeError(f"scenario 1: {errors} errors")

    async def latency(self, api_url: str) -> None:
        """Scenario 2 (worker and the no-op worker running)."""
        opts, report = self.options, self.report
        p50 = Figure(
            "2",
            f"accept → provider p50, {opts.latency_rate} alerts/s x 4 channels",
            "ms",
            baseline_name="arq no-op job, enqueue → start",
            target="≤ 15 ms",
            higher_is_better=False,
        )
        p99 = Figure(
            "2",
            f"accept → provider p99, {opts.latency_rate} alerts/s x 4 channels",
            "ms",
            baseline_name="arq no-op job, enqueue → start",
            target="≤ 50 ms",
            higher_is_better=False,
        )
        report.figures += [p50, p99]
        self.providers.delay = self.smtp.delay = 0.0
        # Paced: each connection waits 500 ms before each request, so that the server's own
        # latency changes the rate little.
        connections = max(1, opts.latency_rate // 2)
        delay = round(connections * 1000 / opts.latency_rate)
        for run in range(opts.runs):
            base = await self._noop_latency(opts.latency_seconds, opts.latency_rate)
            ((webhook_id, token),) = await new_webhooks(self.pool, 1, list(CHANNELS))
            sent = await wrk(
                api_url,
                [token],
                opts.latency_seconds,
                self.folder,
                connections=connections,
                delay_ms=delay,
                tag=f"s2r{run}",
            )
            if sent["errors"] or not sent["requests"]:
                raise RuntimeError(f"scenario 2: {sent['errors']} errors, {sent['requests']} requests")
            want = 0

            async def all_delivered(webhook_id: str = webhook_id, sent: dict[str, Any] = sent) -> bool:
                nonlocal want
                stored = await self.pool.fetchval(
                    "SELECT count(*) FROM alerts WHERE webhook_id = $1", uuid.UUID(webhook_id)
                )
                done = await self.pool.fetchval(COUNT_DELIVERED, uuid.UUID(webhook_id))
                want = stored * len(CHANNELS)
                return stored >= sent["requests"] and done >= want

            await wait_until(all_delivered, "scenario 2's deliveries", seconds=600)
            alerts = await self.pool.fetchval(
                "SELECT count(*) FROM alerts WHERE webhook_id = $1", uuid.UUID(webhook_id)
            )
            times = sorted(r["ms"] for r in await self.pool.fetch(DELIVERY_TIMES, uuid.UUID(webhook_id)))
            p50.subject.append(float(percentile(times, 50)))
            p99.subject.append(float(percentile(times, 99)))
            p50.baseline.append(percentile(base, 50))
            p99.baseline.append(percentile(base, 99))
            report.checks.append(
                f"2: {sent['rate']:.0f} alerts/s sent for {opts.latency_seconds:g} s, {sent['requests']} "
                f"answered 202, {alerts} alerts stored, deliveries: {await self._by_channel(webhook_id)}; "
                f"no-op baseline {len(base)} jobs"
            )

    async def _noop_latency(self, seconds: float, rate: float) -> list[float]:
        """Enqueue no-op jobs at ``rate`` for ``seconds`` (an absolute schedule); each one's wait."""
        ids = []
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            job_id = f"noop-{uuid.uuid4().hex}"
            await self.noop.enqueue_job(NOOP, _job_id=job_id)
            ids.append(job_id)
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))

        async def finished() -> bool:
            return len(await noop_results(self.noop, ids)) == len(ids)

        await wait_until(finished, "the no-op jobs", seconds=60)
        return sorted(float(r.result) for r in await noop_results(self.noop, ids))

    async def fanout(self) -> None:
        """Scenario 3: all jobs queued due an hour from now, then made due at once (the workers run)."""
        opts, report = self.options, self.report
        rate = Figure(
            "3",
            "deliveries/s, one worker, providers answering after 50 ms",
            "deliveries/s",
            baseline_name="arq no-op jobs/s, same worker settings",
            target="≥ 0.6x",
        )
        report.figures.append(rate)
        self.providers.delay = self.smtp.delay = 0.05
        alerts = opts.fanout_alerts
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        for run in range(opts.runs):
            # Baseline: as many no-op jobs as there will be deliveries.
            ids = [f"noop-{uuid.uuid4().hex}" for _ in range(alerts * len(CHANNELS))]
            for job_id in ids:
                await self.noop.enqueue_job(NOOP, _job_id=job_id, _defer_until=later)
            await release(self.noop, NOOP_QUEUE, ids)

            async def drained(ids: list[str] = ids) -> bool:
                return len(await noop_results(self.noop, ids)) == len(ids)

            await wait_until(drained, "arq to drain the no-op jobs", seconds=300)
            results = await noop_results(self.noop, ids)
            window = max(r.finish_time for r in results) - min(r.start_time for r in results)
            rate.baseline.append(len(ids) / max(window.total_seconds(), 1e-3))

            before = await self.cpu_snapshot()
            per_second, check = await self._drain_deferred(alerts, f"fan-out {run}")
            self.note_cpu("3: distinct alerts, 4 deliveries each", before, await self.cpu_snapshot(), alerts)
            rate.subject.append(per_second)
            report.checks.append(f"3: {check}")

    async def _drain_deferred(self, alerts: int, tag: str) -> tuple[float, str]:
        """``alerts`` distinct alerts to a new webhook of the 4 channels, queued due an hour from now,
        then made due at once; deliveries/s from the first alert stored to the last delivery, and
        what was checked (every delivery recorded, the webhook's counters exact)."""
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        ((webhook_id, _),) = await new_webhooks(self.pool, 1, list(CHANNELS))
        ids = [str(uuid.uuid4()) for _ in range(alerts)]
        for n, alert_id in enumerate(ids):
            # What engine.queue.enqueue_alert queues, deferred.
            payload = {
                "alert_id": alert_id,
                "webhook_id": webhook_id,
                "body": json.dumps({"title": f"{tag}-{n}"}),
                "content_type": "application/json",
                "received_at": dt.datetime.now(dt.UTC).isoformat(),
                "request_id": None,
                "is_test": False,
            }
            await self.redis.enqueue_job(queue.PROCESS_ALERT, payload, _job_id=alert_id, _defer_until=later)
        await release(self.redis, queue.default_queue_name, ids)
        want = alerts * len(CHANNELS)

        async def delivered() -> bool:
            return await self.pool.fetchval(COUNT_DELIVERED, uuid.UUID(webhook_id)) >= want

        await wait_until(delivered, f"the deliveries of {tag}", seconds=600)
        seconds = await self.pool.fetchval(FANOUT_WINDOW, uuid.UUID(webhook_id))
        await self._settled(webhook_id, alerts)
        counters = tuple(await self.pool.fetchrow(COUNTERS, uuid.UUID(webhook_id)))
        exact = counters == (alerts, alerts, 0, 0)
        if not exact:
            raise RuntimeError(f"{tag}: counters {counters}, expected ({alerts}, {alerts}, 0, 0)")
        check = (
            f"{want} deliveries recorded in PostgreSQL ({await self._by_channel(webhook_id)}); webhook "
            f"counters total/successful/failed/pending = {counters} (exact)"
        )
        return want / max(float(seconds), 1e-3), check

    # ------------------------------------------------------------ processes of the run, /proc

    async def cpu_snapshot(self) -> CpuSnapshot:
        """CPU seconds so far of the API, the workers, Redis (its process_id) and this database's
        PostgreSQL backends. Redis and PostgreSQL shared with other users count their work too."""
        info = await self.redis.info("server")
        backends = [
            r["pid"]
            for r in await self.pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
        ]
        kinds = {
            "API": [self.api.pid] if self.api else [],
            "worker": [w.pid for w in self.workers if w.alive()],
            "Redis": [int(info["process_id"])],
            "PostgreSQL": backends,
        }
        return {kind: {pid: cpu_seconds(pid) for pid in pids} for kind, pids in kinds.items()}

    def note_cpu(
        self, what: str, before: CpuSnapshot, after: CpuSnapshot, alerts: int, accepted: int | None = None
    ) -> None:
        """CPU milliseconds per alert of each kind of process over a run of ``alerts`` alerts stored;
        the API's per alert it ``accepted`` when that differs (the worker behind)."""
        used = cpu_used(before, after)
        per_alert = {kind: seconds * 1000 / max(alerts, 1) for kind, seconds in used.items()}
        if accepted is not None:
            per_alert["API"] = used.get("API", 0.0) * 1000 / max(accepted, 1)
        self.report.cpu[f"{what} ({alerts} alerts)"] = per_alert
        shown = ", ".join(f"{kind} {ms:.2f}" for kind, ms in per_alert.items() if ms)
        self.report.checks.append(f"{what}: CPU ms per alert over {alerts} alerts: {shown}")

    async def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    async def start_workers(self, count: int, env: dict[str, str] | None = None) -> None:
        self.workers += [start_worker(env or self.env, self.folder) for _ in range(count)]
        await started(self.workers)

    def rss(self) -> tuple[float, float]:
        """Resident MB of the API and of the (first) worker."""
        return rss_mb(self.api.pid) if self.api else 0.0, rss_mb(self.workers[0].pid) if self.workers else 0.0

    # ------------------------------------------------------------ scenarios 4-7

    async def scale(self) -> None:
        """Scenario 4: the same deferred fan-out drained by one worker, then by two, alternating;
        per-worker concurrency fixed low, so that a worker waits on its providers (200 ms) rather
        than on the CPU: the ratio shows whether a second process adds its share."""
        opts = self.options
        fig = Figure(
            "4",
            f"deliveries/s, 2 workers of {opts.scale_concurrency} jobs, providers answering after 200 ms",
            "deliveries/s",
            baseline_name="1 worker, same settings",
            target="≥ 1.7x",
        )
        self.report.figures.append(fig)
        self.providers.delay = self.smtp.delay = 0.2
        env = {**self.env, "MONODUTY_WORKER_CONCURRENCY": str(opts.scale_concurrency)}
        await self.stop_workers()
        try:
            for run in range(opts.runs):
                for count, series in ((1, fig.baseline), (2, fig.subject)):
                    await self.start_workers(count, env)
                    try:
                        rate, check = await self._drain_deferred(opts.scale_alerts, f"s4r{run}w{count}")
                    finally:
                        await self.stop_workers()
                    series.append(rate)
                    self.report.checks.append(f"4: {count} worker(s), {rate:.1f} deliveries/s: {check}")
        finally:
            await self.start_workers(1)

    async def storm(self, bare_url: str) -> None:
        """Scenario 5: ``--storm-rate`` alerts/s of one dedup key for ``--storm-seconds`` to a webhook
        of the 4 channels, the queue depth and both processes' memory sampled every 0.5 s until the
        queue is empty (at most ``--storm-drain`` s after the burst). One run: the burst is the sample."""
        opts, report = self.options, self.report
        rate = Figure(
            "5",
            f"accepted alerts/s, one dedup key, {opts.storm_rate}/s asked for {opts.storm_seconds:g} s",
            "alerts/s",
            baseline_name="bare endpoint, same pacing",
            target=f"{opts.storm_rate}/s",
        )
        depth = Figure(
            "5",
            "queue depth, highest after the burst",
            "jobs",
            baseline_name="depth when the burst ended",
            target="≤ 1.0x (no growth)",
            higher_is_better=False,
        )
        api_mem = Figure(
            "5",
            "API resident memory after the storm",
            "MB",
            baseline_name="before it",
            target="≤ 1.1x",
            higher_is_better=False,
        )
        worker_mem = Figure(
            "5",
            "worker resident memory after the storm",
            "MB",
            baseline_name="before it",
            target="≤ 1.1x",
            higher_is_better=False,
        )
        report.figures += [rate, depth, api_mem, worker_mem]
        self.providers.delay = self.smtp.delay = 0.0
        # wrk paces each connection (a pause after each answer): 10 a second per connection.
        connections = max(1, min(256, opts.storm_rate // 10))
        delay = max(1, round(connections * 1000 / opts.storm_rate))
        body = """'{"title":"storm: disk full on db-1","message":"from wrk"}'"""
        # Grouped by the sender's key, else the content: every alert of the storm is one problem.
        ((webhook_id, token),) = await new_webhooks(self.pool, 1, list(CHANNELS), dedup_by="group")
        base = await wrk(
            bare_url,
            [token],
            opts.storm_seconds,
            self.folder,
            connections=connections,
            delay_ms=delay,
            body=body,
        )
        api_before, worker_before = self.rss()
        samples: list[tuple[float, int]] = []  # (seconds since the burst began, queue depth)
        started_at = time.monotonic()
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                samples.append(
                    (time.monotonic() - started_at, await self.redis.zcard(queue.default_queue_name))
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5)

        sampler = asyncio.create_task(sample())
        before = await self.cpu_snapshot()
        sent = await wrk(
            self.api_url,
            [token],
            opts.storm_seconds,
            self.folder,
            connections=connections,
            delay_ms=delay,
            body=body,
        )
        burst_end = time.monotonic() - started_at

        async def drained() -> bool:
            return await self.redis.zcard(queue.default_queue_name) == 0

        try:
            await wait_until(drained, "the storm's queue to drain", seconds=opts.storm_drain)
            drain = f"queue empty {time.monotonic() - started_at - burst_end:.1f} s after the burst"
        except RuntimeError:
            left = await self.redis.zcard(queue.default_queue_name)
            drain = f"NOT drained: {left} jobs left {opts.storm_drain:g} s after the burst (then dropped)"
        done.set()
        await sampler
        # What is left is dropped: the next scenario starts on an empty queue (the run's own db).
        await self.redis.delete(queue.default_queue_name)
        stored = await self.pool.fetchval(
            "SELECT count(*) FROM alerts WHERE webhook_id = $1", uuid.UUID(webhook_id)
        )
        self.note_cpu(
            "5: repeats of one dedup key", before, await self.cpu_snapshot(), stored, sent["requests"]
        )
        api_after, worker_after = self.rss()
        at_end = max((d for t, d in samples if t <= burst_end), default=0)
        after = max((d for t, d in samples if t > burst_end), default=0)
        rate.subject.append(sent["rate"])
        rate.baseline.append(base["rate"])
        depth.subject.append(after)
        depth.baseline.append(max(at_end, 1))
        api_mem.subject.append(api_after)
        api_mem.baseline.append(api_before)
        worker_mem.subject.append(worker_after)
        worker_mem.baseline.append(worker_before)
        incidents = await self.pool.fetchval(
            "SELECT count(*) FROM incidents WHERE webhook_id = $1", uuid.UUID(webhook_id)
        )
        pages = await self.pool.fetch(
            "SELECT d.channel, count(*) AS n FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
            "WHERE a.webhook_id = $1 AND d.kind = 'page' GROUP BY 1 ORDER BY 1",
            uuid.UUID(webhook_id),
        )
        shown = ", ".join(f"{r['channel']} {r['n']}" for r in pages)
        one_each = len(pages) == len(CHANNELS) and all(r["n"] == 1 for r in pages)
        trail = ", ".join(f"{t:.0f}s:{d}" for t, d in samples[:: max(1, len(samples) // 12)])
        report.checks.append(
            f"5: {sent['requests']} alerts answered 202 ({sent['errors']} errors), {stored} stored; "
            f"{incidents} incident(s), pages {shown} ({'' if one_each else 'NOT '}one per channel); "
            f"{drain}; queue depth (s:jobs) {trail}"
        )
        if sent["errors"] or incidents != 1 or not one_each:
            raise RuntimeError(f"scenario 5: {report.checks[-1]}")

    async def memory(self) -> None:
        """Scenario 7: ``--memory-alerts`` alerts of one dedup key to a webhook of one channel (push),
        wrk unpaced, API and worker running; resident memory of both sampled each second until the
        worker has stored them all. One cheap shape, chosen so that 200,000 alerts go through both
        processes in minutes on 2 cores: a repeat is one alert row and one incident update, no page."""
        opts, report = self.options, self.report
        n = opts.memory_alerts
        api_mem = Figure(
            "7",
            f"API resident memory after {n:,} alerts",
            "MB",
            baseline_name=f"after the first {n // 10:,}",
            target="≤ 1.1x and < 150 MB",
            higher_is_better=False,
        )
        worker_mem = Figure(
            "7",
            f"worker resident memory after {n:,} alerts",
            "MB",
            baseline_name=f"after the first {n // 10:,}",
            target="≤ 1.1x and < 200 MB",
            higher_is_better=False,
        )
        report.figures += [api_mem, worker_mem]
        self.providers.delay = self.smtp.delay = 0.0
        ((webhook_id, token),) = await new_webhooks(self.pool, 1, ["PUSH_NOTIF"], dedup_by="group")
        body = """'{"title":"memory: one key","message":"from wrk"}'"""
        samples: list[tuple[int, float, float]] = []  # (alerts stored, API MB, worker MB)
        done = asyncio.Event()

        async def stored() -> int:
            return int(
                await self.pool.fetchval(
                    "SELECT count(*) FROM alerts WHERE webhook_id = $1", uuid.UUID(webhook_id)
                )
            )

        async def sample() -> None:
            while not done.is_set():
                samples.append((await stored(), *self.rss()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 1.0)

        sampler = asyncio.create_task(sample())
        before = await self.cpu_snapshot()
        started_at = time.monotonic()

        async def reached() -> bool:  # stored by the worker, or still queued
            return await stored() + await self.redis.zcard(queue.default_queue_name) >= n

        sent = await wrk(self.api_url, [token], opts.memory_seconds, self.folder, body=body, until=reached)

        async def all_stored() -> bool:
            return await stored() >= sent["requests"]

        late = ""
        try:
            await wait_until(all_stored, "scenario 7's alerts to be stored", seconds=opts.memory_drain)
        except RuntimeError:  # the memory of what went through is still the figure; say so
            late = f"; NOT all stored {opts.memory_drain:g} s after wrk stopped"
        took = time.monotonic() - started_at
        done.set()
        await sampler
        total = await stored()
        samples.append((total, *self.rss()))
        self.note_cpu(
            "7: repeats of one dedup key, one channel",
            before,
            await self.cpu_snapshot(),
            total,
            sent["requests"],
        )
        first = next(s for s in samples if s[0] >= total // 10)
        # What went through each: the API accepted sent["requests"], the worker stored ``total``.
        api_mem.name = f"API resident memory after {sent['requests']:,} alerts accepted"
        worker_mem.name = f"worker resident memory after {total:,} alerts stored"
        for figure in (api_mem, worker_mem):
            figure.baseline_name = f"after the first {total // 10:,} stored"
        api_mem.baseline.append(first[1])
        worker_mem.baseline.append(first[2])
        api_mem.subject.append(samples[-1][1])
        worker_mem.subject.append(samples[-1][2])
        report.checks.append(
            f"7: {sent['requests']:,} alerts answered 202 ({sent['errors']} errors), {total:,} stored, in "
            f"{took:.0f} s; peak API {max(s[1] for s in samples):.1f} MB, "
            f"worker {max(s[2] for s in samples):.1f} MB"
            + ("" if sent["requests"] >= n else f"; wrk stopped at --memory-seconds before {n:,}")
            + late
        )

    async def read_paths(self) -> None:
        """Scenario 6: the rows loaded in SQL (bench/reads.py), then each read paced with wrk
        (``--reads-rate`` requests/s over 10 connections) beside ``GET /api/auth/me`` (the same
        middleware chain and key check with no query of its own), alternating."""
        opts, report = self.options, self.report
        started_at = time.monotonic()
        async with self.pool.acquire() as conn:
            loaded = await load_reads(
                conn,
                webhooks=opts.reads_webhooks,
                alerts=opts.reads_alerts,
                incidents=opts.reads_incidents,
                notifications=opts.reads_notifications,
            )
        report.checks.append(
            "6: loaded in SQL in {:.0f} s; the database holds {}".format(
                time.monotonic() - started_at, ", ".join(f"{v:,} {k}" for k, v in loaded.counts.items())
            )
        )
        reads_of = [
            (
                f"GET /api/webhooks, {opts.reads_webhooks:,} webhooks and {opts.reads_alerts:,} alerts",
                "/api/webhooks",
                "≤ 20 ms",
            ),
            (
                f"GET /api/incidents?status=open, {opts.reads_incidents:,} incidents",
                "/api/incidents?status=open",
                "≤ 20 ms",
            ),
            (
                f"unread count, {opts.reads_notifications:,} notifications",
                "/api/notifications/unread-count",
                "≤ 5 ms",
            ),
        ]
        figures = [
            Figure(
                "6",
                f"p99 of {name}",
                "ms",
                baseline_name="GET /api/auth/me, same pacing",
                target=target,
                higher_is_better=False,
            )
            for name, _, target in reads_of
        ]
        report.figures += figures
        connections = 10
        delay = max(1, round(connections * 1000 / opts.reads_rate))

        async def paced(path: str) -> dict[str, Any]:
            result = await wrk_get(
                self.api_url,
                [path],
                loaded.api_key,
                opts.reads_seconds,
                self.folder,
                connections=connections,
                delay_ms=delay,
            )
            if result["errors"] or not result["requests"]:
                raise RuntimeError(f"scenario 6, {path}: {result['errors']} errors of {result['requests']}")
            return result

        if opts.warmup:  # every pooled connection prepares its statements before the figures
            for path in ["/api/auth/me", *(path for _, path, _ in reads_of)]:
                await wrk_get(
                    self.api_url,
                    [path],
                    loaded.api_key,
                    opts.warmup,
                    self.folder,
                    connections=connections,
                    delay_ms=delay,
                )
        medians: dict[str, list[float]] = {}
        for _ in range(opts.runs):
            for figure, (_, path, _) in zip(figures, reads_of, strict=True):
                base, ours = await paced("/api/auth/me"), await paced(path)
                figure.baseline.append(base["p99_us"] / 1000)
                figure.subject.append(ours["p99_us"] / 1000)
                medians.setdefault(path, []).append(ours["p50_us"] / 1000)
                medians.setdefault("/api/auth/me", []).append(base["p50_us"] / 1000)
        report.checks.append(
            "6: p50 (median of runs) "
            + ", ".join(f"{path} {statistics.median(v):.1f} ms" for path, v in medians.items())
        )
        report.checks.append(
            f"6: {opts.reads_rate} requests/s paced, {opts.reads_seconds:g} s each, no errors"
        )

    async def _settled(self, webhook_id: str, alerts: int) -> None:
        async def settled() -> bool:
            row = await self.pool.fetchrow(COUNTERS, uuid.UUID(webhook_id))
            return row["pending_calls"] == 0 and row["total_calls"] >= alerts

        await wait_until(settled, "the webhook's counters to settle", seconds=60)

    async def _by_channel(self, webhook_id: str) -> str:
        rows = await self.pool.fetch(
            "SELECT d.channel, d.status, count(*) AS n FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
            "WHERE a.webhook_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
            uuid.UUID(webhook_id),
        )
        return ", ".join(f"{r['channel']} {r['status']} {r['n']}" for r in rows)

    async def warm_up(self, api_url: str) -> None:
        """One alert through the API to every channel, and one no-op job: both workers are ready."""
        ((webhook_id, token),) = await new_webhooks(self.pool, 1, list(CHANNELS))
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{api_url}/{token}", json={"title": "warm-up"}) as resp,
        ):
            if resp.status != 202:
                raise RuntimeError(f"warm-up alert: {resp.status} {await resp.text()}")

        async def delivered() -> bool:
            return await self.pool.fetchval(COUNT_DELIVERED, uuid.UUID(webhook_id)) >= len(CHANNELS)

        await wait_until(delivered, "the warm-up alert's deliveries", seconds=120)
        job_id = f"noop-{uuid.uuid4().hex}"
        await self.noop.enqueue_job(NOOP, _job_id=job_id)

        async def done() -> bool:
            return len(await noop_results(self.noop, [job_id])) == 1

        await wait_until(done, "the warm-up no-op job", seconds=120)


async def release(redis: ArqRedis, queue_name: str, job_ids: list[str]) -> None:
    """Make deferred jobs due now, all at once (their score in arq's queue is when they are due)."""
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        for job_id in job_ids:
            pipe.zadd(queue_name, {job_id: now_ms}, xx=True)
        await pipe.execute()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        raise ValueError("no values")
    rank = max(0, min(len(values) - 1, round(pct / 100 * len(values) + 0.5) - 1))
    return float(values[rank])


class DelayedSmtp(SmtpServer):
    """The tests' SMTP server, answering DATA after ``delay`` seconds (a provider's own latency)."""

    delay = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)  # the provider's latency, not synchronisation
        return await super().handle_DATA(server, session, envelope)


# ---------------------------------------------------------------- the run


async def run(services: Services, folder: Path, options: argparse.Namespace) -> Report:
    report = Report()
    providers = FakeProviders()
    app = providers.app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    providers.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    with contextlib.ExitStack() as stack:
        smtp = stack.enter_context(DelayedSmtp())
        pool = await db.create_pool(services.database_url)
        redis = await queue.connect(services.redis_url)
        noop = await queue.connect(services.redis_url, queue_name=NOOP_QUEUE)
        env = monoduty_env(
            MONODUTY_DATABASE_URL=services.database_url,
            MONODUTY_REDIS_URL=services.redis_url,
            MONODUTY_REQUIRE_HTTPS="off",
            MONODUTY_RATE_LIMIT_INBOUND="1000000000/minute",
            MONODUTY_RATE_LIMIT_API="1000000000/minute",
            MONODUTY_SMTP_HOST=smtp.host,
            MONODUTY_SMTP_PORT=str(smtp.port),
            MONODUTY_SMTP_TLS="none",
            MONODUTY_TWILIO_ACCOUNT_SID=TWILIO_SID,
            MONODUTY_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
            MONODUTY_TWILIO_FROM="+15005550006",
            MONODUTY_TWILIO_BASE_URL=providers.url,
            MONODUTY_NTFY_URL=providers.url,
            MONODUTY_NTFY_TOKEN=NTFY_TOKEN,
            **UNCAPPED,
        )
        bench = Bench(services, folder, options, pool, redis, noop, env, providers, smtp, report)
        processes: list[Process] = []
        try:
            # Started together (each takes seconds to import); the no-op worker idles on its own queue.
            processes.append(start_noop_worker(env, folder))
            api, api_port = start_api(env, folder)
            bare, bare_port = start_bare(folder)
            processes += [api, bare]
            api_url, bare_url = listening(api, api_port), listening(bare, bare_port)
            env["MONODUTY_PUBLIC_URL"] = api_url
            bench.api, bench.api_url = api, api_url

            async def timed(scenario: str, run: Callable[[], Awaitable[None]]) -> None:
                if scenario in options.scenarios:
                    began = time.monotonic()
                    await run()
                    report.durations[scenario] = time.monotonic() - began

            await timed("1", lambda: bench.ingest(api_url, bare_url))
            # Scenario 1's jobs are not for a worker (the Redis db is this run's own).
            await redis.flushdb()
            await bench.start_workers(1)
            await bench.warm_up(api_url)
            await timed("2", lambda: bench.latency(api_url))
            await timed("3", bench.fanout)
            await timed("4", bench.scale)
            await timed("5", lambda: bench.storm(bare_url))
            await timed("7", bench.memory)
            # Last: its million-row tables would slow the writes of the others.
            await timed("6", bench.read_paths)
        finally:
            await bench.stop_workers()
            for process in processes:
                process.stop()
            providers.release()
            await runner.cleanup()
            await noop.aclose()
            await redis.aclose()
            await pool.close()
    return report


def machine() -> dict[str, str]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


async def server_versions(services: Services) -> dict[str, str]:
    conn = await asyncpg.connect(services.database_url)
    try:
        pg = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    redis = await queue.connect(services.redis_url)
    try:
        info = await redis.info("server")
    finally:
        await redis.aclose()
    return {"PostgreSQL": pg, "Redis": str(info.get("redis_version"))}


def versions() -> dict[str, str]:
    found = {"Python": platform.python_version()}
    for package in ("aiohttp", "arq", "redis", "hiredis", "asyncpg", "uvloop"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["event loop"] = loops.NAME
    found["wrk"] = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    return found


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + (
        " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def markdown(
    report: Report, options: argparse.Namespace, about: dict[str, dict[str, str]], argv: list[str]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `bench/run suite{' ' + ' '.join(argv) if argv else ''}` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Every figure is the median of {options.runs} runs, "
        "beside a baseline measured in the same run (baseline and subject runs alternate); the ratio "
        "is what counts.",
        "",
        *report.notes,
        "",
        f"- Machine: {about['machine']['cores']} cores, {about['machine']['cpu']}; load average "
        f"{about['machine']['load']} at the start, {about['machine']['load_end']} at the end",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in about["versions"].items()),
        f"- Commit: {about['commit']['commit']}",
        "",
        "| # | figure | Monoduty | baseline | ratio | target | runs (Monoduty / baseline) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report.figures:
        if not f.subject:
            continue
        ratio = f.ratio
        runs = ", ".join(f"{v:.1f}" for v in f.subject) + " / " + ", ".join(f"{v:.1f}" for v in f.baseline)
        lines.append(
            f"| {f.scenario} | {f.name} | {statistics.median(f.subject):.1f} {f.unit} | "
            f"{statistics.median(f.baseline):.1f} {f.unit} ({f.baseline_name}) | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | {f.target} | {runs} |"
        )
    lines += ["", "Checks made on the way:", "", *[f"- {c}" for c in report.checks], ""]
    if report.cpu:
        kinds = ["API", "worker", "Redis", "PostgreSQL"]
        lines += [
            "CPU milliseconds per alert (utime + stime from /proc, before and after each run; PostgreSQL: "
            "this database's backends; bench/SCALING.md sizes from these):",
            "",
            "| run | " + " | ".join(kinds) + " |",
            "|---|" + "---|" * len(kinds),
            *[
                f"| {what} | " + " | ".join(f"{per_alert.get(k, 0.0):.2f}" for k in kinds) + " |"
                for what, per_alert in report.cpu.items()
            ],
            "",
        ]
    if report.durations:
        lines += [
            "Duration of each scenario: "
            + ", ".join(f"{k}: {v:.0f} s" for k, v in sorted(report.durations.items()))
            + ".",
            "",
        ]
    missing = [n for n in "1234567" if n not in options.scenarios]
    if missing:
        lines += [f"Not measured in this run (--scenarios): {', '.join(missing)}.", ""]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--ingest-seconds", type=float, default=10)
    parser.add_argument("--latency-seconds", type=float, default=60)
    parser.add_argument("--latency-rate", type=int, default=200)
    parser.add_argument("--fanout-alerts", type=int, default=500)
    parser.add_argument("--scale-alerts", type=int, default=100)
    parser.add_argument("--scale-concurrency", type=int, default=10)
    parser.add_argument("--storm-rate", type=int, default=2000)
    parser.add_argument("--storm-seconds", type=float, default=30)
    parser.add_argument("--storm-drain", type=float, default=120)
    parser.add_argument("--reads-webhooks", type=int, default=1000)
    parser.add_argument("--reads-alerts", type=int, default=1_000_000)
    parser.add_argument("--reads-incidents", type=int, default=100_000)
    parser.add_argument("--reads-notifications", type=int, default=1_000_000)
    parser.add_argument("--reads-rate", type=int, default=50)
    parser.add_argument("--reads-seconds", type=float, default=6)
    parser.add_argument("--memory-alerts", type=int, default=200_000)
    parser.add_argument("--memory-seconds", type=float, default=180)
    parser.add_argument("--memory-drain", type=float, default=60)
    parser.add_argument("--scenarios", default="1234567")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "RESULTS.md")
    parser.add_argument("--smoke", action="store_true", help="seconds, one run: checks the bench runs")
    options = parser.parse_args(argv)
    if options.smoke:
        options.runs, options.warmup, options.ingest_seconds = 1, 0, 1
        options.latency_seconds, options.latency_rate, options.fanout_alerts = 1, 20, 5
        options.scale_alerts, options.storm_rate, options.storm_seconds, options.storm_drain = 5, 50, 2, 60
        options.reads_webhooks, options.reads_alerts, options.reads_incidents = 20, 2000, 500
        options.reads_notifications, options.reads_rate, options.reads_seconds = 2000, 20, 1
        options.memory_alerts, options.memory_seconds, options.memory_drain = 300, 60, 60
    return options


def run_suite(services: Services, options: argparse.Namespace, argv: list[str]) -> Report:
    about: dict[str, dict[str, str]] = {
        "machine": machine(),
        "versions": versions(),
        "commit": {"commit": commit()},
    }
    about["versions"].update(asyncio.run(server_versions(services)))
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        report = asyncio.run(run(services, Path(tmp), options))
    about["machine"]["load_end"] = machine()["load"]
    report.notes.append(
        "Measured on a shared, loaded machine (other test suites and benchmarks running at the same time): "
        "absolute numbers are noisy, the ratios less so. To be rerun on an idle machine."
    )
    options.out.write_text(markdown(report, options, about, argv))
    return report


@contextlib.contextmanager
def _services() -> Iterator[Services]:
    with provision() as services:
        yield services


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    options = parse(argv)
    with _services() as services:
        run_suite(services, options, argv)
    print(options.out.read_text())


if __name__ == "__main__":
    main()
