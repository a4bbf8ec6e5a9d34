"""Redis faults under load: do workers survive, how fast do they send after, is `worker --check` true?

Each scenario starts its own redis-server (AOF, appendfsync always), the API in this process,
real `monoduty worker` processes on the source tree under test, and a local ntfy that records when
each alert arrives. Senders post ~100 alerts/s and re-post after a 503, as Alertmanager does.

    bench/run redis_faults [--scenario resets|crash|freeze|after] [--seconds 20] [--provider-ms 0]

- resets: CLIENT KILL TYPE normal every 250 ms; which workers exit and when, alerts lost.
- crash: Redis SIGKILLed and restarted three times; same figures.
- freeze: Redis SIGSTOPped 10 s; what inbound requests answered and how long they took.
- after: one worker; Redis SIGKILLed once; accept-to-send (202 to the provider) before and after,
  and how often `monoduty worker --check` said unhealthy while the worker was delivering.

For figures of an older commit, run this file (and the tests it imports) from an export of it:
the worker processes import the tree that holds tests/processes.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests import faults, processes
from tests.support.factories import make_client, new_account
from tests.support.faults import RedisServer, WorkerProcess
from tests.support.outages import Sender, kill_clients, new_webhook, settings_for
from tests.support.providers import FakeProviders
from tests.support.services import Services, provision

NEVER_RETRIEVED = "Task exception was never retrieved"


class Ntfy:
    """ntfy's publish endpoint that notes when each message (the alert's title) arrives."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # a provider that takes its time: jobs in flight when Redis dies
        self.arrived: dict[str, float] = {}
        self.url = ""
        self._server: TestServer | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{topic}", self._publish)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server(access_log=None)
        self.url = str(self._server.make_url("")).rstrip("/")

    async def _publish(self, request: web.Request) -> web.Response:
        self.arrived.setdefault(await request.text(), time.monotonic())
        await asyncio.sleep(self.delay)
        return web.json_response({"id": "x", "event": "message"})

    async def close(self) -> None:
        assert self._server is not None
        await self._server.close()


class TimedSender(Sender):
    """A Sender that notes when each alert was accepted (by its title)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepted_at: dict[str, float] = {}

    async def _post(self, title: str) -> int | str:
        status = await super()._post(title)
        if status == 202:
            self.accepted_at[title] = time.monotonic()
        return status


def check(env: dict[str, str]) -> int:
    return processes.monoduty("worker", "--check", env=env, check=False, timeout=30).returncode


async def scenario(
    services: Services, name: str, seconds: float, logs: Path | None, provider_ms: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = logs or Path(tmp)  # the workers' logs and Redis' files
        server = RedisServer(folder / "redis", aof=True)
        server.start()
        ntfy = Ntfy(provider_ms / 1000)
        await ntfy.start()
        fake = FakeProviders()
        fake.url = ntfy.url
        pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=4)
        client = await make_client(settings_for(services, server, fake))
        account = await new_account(pool)
        path = await new_webhook(client, account)
        count = 1 if name == "after" else 2
        env = {
            "MONODUTY_DATABASE_URL": services.database_url,
            "MONODUTY_REDIS_URL": server.url,
            "MONODUTY_NTFY_URL": ntfy.url,
        }
        workers = [WorkerProcess(folder / f"worker-{n}.log", **env) for n in range(count)]
        exited: dict[int, float] = {}
        result: dict[str, Any] = {"scenario": name}

        def note_exits() -> None:
            for n, w in enumerate(workers):
                if not w.alive() and n not in exited:
                    exited[n] = round(time.monotonic() - fault_at, 1)

        try:
            for w in workers:
                await processes.wait_until(lambda w=w: "Starting worker" in w.output(), "a worker", 30)
            # "after" measures latency, not throughput: a load one worker keeps up with.
            sender = (
                TimedSender(client, path, senders=1, interval=0.05)
                if name == "after"
                else TimedSender(client, path)
            )
            sender.start()
            await asyncio.sleep(3)  # steady load first
            fault_at = time.monotonic()
            if name == "resets":
                while time.monotonic() - fault_at < seconds:
                    await asyncio.to_thread(kill_clients, server)
                    await asyncio.sleep(0.25)
                    note_exits()
            elif name == "crash":
                for _ in range(3):
                    server.kill()
                    await asyncio.sleep(0.5)
                    server.start()
                    await asyncio.sleep(3)
                    note_exits()
            elif name == "freeze":
                assert server.proc is not None
                os.kill(server.proc.pid, signal.SIGSTOP)
                probes: list[tuple[int | str, float]] = []
                while time.monotonic() - fault_at < 10:
                    t0 = time.monotonic()
                    try:
                        resp = await asyncio.wait_for(client.post(path, json={"title": "probe"}), 15)
                        probes.append((resp.status, time.monotonic() - t0))
                    except TimeoutError:
                        probes.append(("no answer in 15 s", time.monotonic() - t0))
                os.kill(server.proc.pid, signal.SIGCONT)
                result["probes during freeze"] = [(s, round(t, 2)) for s, t in probes]
            elif name == "after":
                before = dict(sender.accepted_at)
                server.kill()
                await asyncio.sleep(1)
                server.start()
                restarted = time.monotonic()
                checks: list[tuple[float, int]] = []
                while time.monotonic() - restarted < seconds:
                    code = await asyncio.to_thread(check, processes.monoduty_env(**env))
                    checks.append((round(time.monotonic() - restarted, 1), code))
                    await asyncio.sleep(0.5)
                result["worker --check failures after restart (s, of n)"] = (
                    [t for t, c in checks if c != 0],
                    len(checks),
                )
                result["before"] = before
                result["restarted"] = restarted
            await sender.stop()
            note_exits()
            # Let the survivors drain the queue.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(ntfy.arrived) < len(sender.accepted):
                if not any(w.alive() for w in workers):
                    break
                await asyncio.sleep(0.5)
            note_exits()
            result["workers exited (s after fault start)"] = exited or "none"
            result["accepted"] = len(sender.accepted)
            result["delivered"] = len(set(sender.accepted_at) & set(ntfy.arrived))
            result["statuses"] = dict(sender.statuses)
            result["never retrieved"] = sum(w.output().count(NEVER_RETRIEVED) for w in workers)
            if name == "after":
                latencies = {
                    t: ntfy.arrived[t] - a for t, a in sender.accepted_at.items() if t in ntfy.arrived
                }
                before_ids = result.pop("before")
                restarted = result.pop("restarted")
                accepted_at = sender.accepted_at
                windows = {
                    "accept-to-send before the kill": [v for t, v in latencies.items() if t in before_ids],
                    "accept-to-send 0-5 s after restart": [
                        v for t, v in latencies.items() if 0 <= accepted_at[t] - restarted < 5
                    ],
                    "accept-to-send 5 s+ after restart": [
                        v for t, v in latencies.items() if accepted_at[t] - restarted >= 5
                    ],
                }
                for label, values in windows.items():
                    if values:
                        values.sort()
                        result[label] = {
                            "p50": round(statistics.median(values), 3),
                            "p95": round(values[max(0, int(len(values) * 0.95) - 1)], 3),
                            "max": round(values[-1], 3),
                            "n": len(values),
                        }
        finally:
            for w in workers:
                if w.alive():
                    w.stop()
            await client.close()
            await pool.close()
            await ntfy.close()
            server.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=["resets", "crash", "freeze", "after"], default="resets")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--provider-ms", type=float, default=0, help="the provider's answer time")
    parser.add_argument("--logs", type=Path, help="keep the worker logs in this folder")
    args = parser.parse_args()
    assert Path(faults.REDIS_SERVER).exists(), "needs /usr/bin/redis-server"
    with provision() as services:
        result = asyncio.run(scenario(services, args.scenario, args.seconds, args.logs, args.provider_ms))
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
