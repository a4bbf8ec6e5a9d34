"""Scenario 2 of issue 17, side effect then crash: its run, its figures and its artefact.

A real `monoduty api` and one `monoduty worker`; one webhook paging SMS (the local Twilio), push
(the local ntfy), email (a local SMTP server) and WEBHOOK (a local Standard Webhooks receiver).
Each round posts ``alerts`` alerts; every provider takes each message (it is recorded as received)
and then holds its answer back. Once every send of the round is held, the worker is SIGKILLed:
each of those deliveries was accepted by its provider and its outcome never recorded. A new
worker re-runs them (their claim lapses after the job timeout), the holds are let go, and the run
is judged from the database, the API and what the providers received:

- duplicates: sends a provider received beyond the first for one delivery, per 1,000 deliveries;
- shown twice: what the person or program sees twice where the provider honours the key Monoduty
  sends (a Standard Webhooks receiver dedupes by ``webhook-id``, a mail reader shows one message
  per ``Message-ID``); Twilio and ntfy take no key, so there every duplicate is shown;
- silent: a duplicated delivery not recorded as ``possibly_duplicated`` (with the send-in-progress
  mark none is; without it, as before this scenario, every duplicate was silent);
- timeline: each possibly duplicated page says so in its incident's timeline (the API).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from tests.faults.storm import PUBLIC_URL, api_process, worker_env
from tests.support.factories import Account
from tests.support.faults import WorkerProcess
from tests.support.processes import ApiProcess, wait_until
from tests.support.providers import FakeProviders, Reply, SmtpServer
from tests.support.services import Services

# The killed worker's claims lapse after this + 5 s. Longer than a round's hold phase: a send held
# past its job's timeout is cancelled and tried again (possibly duplicated, rightly) before the kill.
JOB_TIMEOUT = 15
# Likewise for the provider timeout: a held send that timed out is retried before the kill (marked
# possibly duplicated, rightly), which is not this scenario.
PROVIDER_TIMEOUT = 12
SMS, PUSH, EMAIL = "+14155550131", "crash-push", "crash@example.com"
CHANNELS = ("SMS", "PUSH_NOTIF", "EMAIL", "WEBHOOK")
# Who dedupes a repeated send by the key Monoduty sends with it (engine.channels.*).
KEY_HONOURED = {"SMS": False, "PUSH_NOTIF": False, "EMAIL": True, "WEBHOOK": True}


@dataclass(frozen=True)
class CrashSize:
    name: str
    alerts: int  # per round: at most the channel concurrency (40), so every send is held at once
    rounds: int
    drain_timeout: float = 90.0


@dataclass
class CrashFigures:
    size: dict[str, Any]
    accepted: int = 0
    lost: int = 0
    deliveries: int = 0
    crashed_sends: int = 0  # deliveries marked as a send in progress when the worker was killed
    duplicates: dict[str, int] = field(default_factory=dict)  # per channel, at the provider
    duplicates_per_1000: float = 0.0
    shown_twice: dict[str, int] = field(default_factory=dict)  # per channel, after the provider's key
    shown_twice_per_1000: float = 0.0
    flagged: int = 0  # deliveries recorded possibly_duplicated
    silent_duplicates: int = 0  # duplicated at a provider, not flagged
    silent_per_1000_without_mark: float = 0.0  # the same sends as before the mark: none flagged
    timeline_missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recovery_s: float | None = None  # last kill -> every delivery final
    seconds: float = 0.0

    @property
    def sound(self) -> bool:
        return (
            self.lost == 0
            and self.silent_duplicates == 0
            and not self.timeline_missing
            and not self.problems
            and self.recovery_s is not None
        )


class HeldSmtp(SmtpServer):
    """The tests' SMTP server: each message is recorded as it arrives, and answered only once
    ``hold`` is cleared (the server took it; its 250 is what the worker never reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()  # set: answers wait
        self.held = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if self.hold.is_set():
            self.held += 1
            await asyncio.to_thread(self._wait_release)
        return answer

    def _wait_release(self) -> None:
        while self.hold.is_set():
            time.sleep(0.01)  # a thread of the SMTP server's, not the test's synchronisation


class Receiver:
    """A Standard Webhooks receiver: records every POST's ``webhook-id`` as it arrives, answers
    only when not held; it processes one event per webhook-id, as the specification asks."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.released = asyncio.Event()
        self.released.set()
        self.held = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        self.ids.append(request.headers.get("webhook-id", ""))
        self.bodies.append(json.loads(await request.read()))
        if not self.released.is_set():
            self.held += 1
            await self.released.wait()
        return web.Response(status=204)


async def post_alerts(http: aiohttp.ClientSession, api: ApiProcess, path: str, tag: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = {"title": f"{tag}-{i} down", "message": f"{tag}-{i} is failing"}
        async with http.post(api.url + path, json=body) as resp:
            assert resp.status == 202, await resp.text()
            ids.append((await resp.json())["alert_id"])
    return ids


async def run_crash(
    size: CrashSize,
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake: FakeProviders,
    folder: Path,
) -> CrashFigures:
    """``size.rounds`` rounds of crash-after-accept; the figures (the caller asserts them)."""
    figures = CrashFigures(size=asdict(size))
    began = time.monotonic()
    receiver = Receiver()
    await receiver.start()
    with HeldSmtp() as smtp:
        env = {
            **worker_env(services, fake, smtp),
            "MONODUTY_JOB_TIMEOUT": str(JOB_TIMEOUT),
            "MONODUTY_PROVIDER_TIMEOUT": str(PROVIDER_TIMEOUT),
            "MONODUTY_SECRET_KEY": "crash-secret-key-" + "7" * 32,
            "MONODUTY_ALLOW_PRIVATE_TARGETS": "true",
        }
        worker: WorkerProcess | None = None
        async with api_process(services, env, folder) as api, aiohttp.ClientSession() as http:
            spec = {
                "name": "side effect then crash",
                "dedupBy": "none",
                "notificationTypes": list(CHANNELS),
                "targetChannels": {"sms": SMS, "push": PUSH, "email": EMAIL, "webhook": receiver.url},
            }
            async with http.post(f"{api.url}/api/webhooks", json=spec, headers=account.headers) as resp:
                assert resp.status == 201, await resp.text()
                webhook = (await resp.json())["webhook"]
            path = webhook["webhook_url"].removeprefix(PUBLIC_URL)
            alert_ids: list[str] = []
            recovery: list[float] = []

            async def pending() -> int:
                async with pool.acquire() as conn:
                    return int(
                        await conn.fetchval(
                            "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
                            "WHERE a.webhook_id = $1 AND d.status = 'pending'",
                            uuid.UUID(webhook["id"]),
                        )
                        + await conn.fetchval(
                            "SELECT count(*) FROM alerts WHERE webhook_id = $1 AND status = 'pending'",
                            uuid.UUID(webhook["id"]),
                        )
                    )

            try:
                for n in range(size.rounds):
                    await wait_until(lambda: fake.in_flight == 0, "the last round's holds to end", 30)
                    fake.hold_again()
                    fake.script(SMS, *[Reply(hang=True)] * size.alerts)
                    fake.script(PUSH, *[Reply(hang=True)] * size.alerts)
                    smtp.held = receiver.held = 0
                    smtp.hold.set()
                    receiver.released.clear()
                    worker = WorkerProcess(folder / f"worker-{n}.log", **env)
                    alert_ids += await post_alerts(http, api, path, f"crash{n}", size.alerts)
                    held = len(CHANNELS) * size.alerts

                    def all_held(held: int = held) -> bool:
                        return fake.in_flight + smtp.held + receiver.held >= held

                    await wait_until(all_held, f"round {n}: every send taken and held", 60)
                    worker.kill()
                    killed_at = time.monotonic()
                    figures.crashed_sends += await in_progress(pool, webhook["id"])
                    fake.release()
                    smtp.hold.clear()
                    receiver.released.set()
                    # The re-runs: a new worker, once the killed one's claims lapse.
                    worker = WorkerProcess(folder / f"worker-{n}-after.log", **env)
                    try:
                        await wait_until(
                            lambda: _none(pending), "every delivery to be final", size.drain_timeout
                        )
                        recovery.append(time.monotonic() - killed_at)
                    except AssertionError as exc:
                        figures.problems.append(f"round {n}: {exc}")
                        break
                    finally:
                        worker.stop()
                if len(recovery) == size.rounds:
                    figures.recovery_s = round(max(recovery), 1)
                await judge(figures, pool, http, api, account, alert_ids, fake, smtp, receiver)
            finally:
                if worker is not None and worker.alive():
                    worker.stop()
                await receiver.stop()
    figures.seconds = round(time.monotonic() - began, 1)
    return figures


async def in_progress(pool: asyncpg.Pool, webhook_id: str) -> int:
    """Deliveries of the webhook marked as a send in progress (what a kill leaves unrecorded)."""
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
                "WHERE a.webhook_id = $1 AND d.status = 'pending' AND d.sending_since IS NOT NULL",
                uuid.UUID(webhook_id),
            )
        )


async def _none(count: Any) -> bool:
    return await count() == 0


async def judge(
    figures: CrashFigures,
    pool: asyncpg.Pool,
    http: aiohttp.ClientSession,
    api: ApiProcess,
    account: Account,
    alert_ids: list[str],
    fake: FakeProviders,
    smtp: SmtpServer,
    receiver: Receiver,
) -> None:
    ids = [uuid.UUID(a) for a in alert_ids]
    async with pool.acquire() as conn:
        alerts = await conn.fetch("SELECT id, status FROM alerts WHERE id = ANY($1::uuid[])", ids)
        rows = await conn.fetch(
            "SELECT d.id, d.alert_id, d.channel, d.status, d.possibly_duplicated, d.incident_id, a.title "
            "FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.alert_id = ANY($1::uuid[])",
            ids,
        )
    figures.accepted = len(alert_ids)
    figures.lost = figures.accepted - sum(1 for a in alerts if a["status"] == "successful")
    figures.deliveries = len(rows)
    figures.problems += [
        f"{r['channel']} of {r['title']}: {r['status']}" for r in rows if r["status"] != "delivered"
    ]
    if figures.deliveries != len(CHANNELS) * figures.accepted:
        figures.problems.append(f"{figures.deliveries} deliveries for {figures.accepted} alerts")
    # What each provider received, by delivery: the alert's title says which alert.
    title_of = {str(r["alert_id"]): r["title"] for r in rows}
    raw: dict[str, Counter[str]] = {c: Counter() for c in CHANNELS}
    shown: dict[str, Counter[str]] = {c: Counter() for c in CHANNELS}
    for request in fake.requests:
        channel = {"sms": "SMS", "push": "PUSH_NOTIF"}.get(request.kind)
        text = request.form.get("Body", "") if request.kind == "sms" else request.headers.get("Title", "")
        for title in set(title_of.values()):
            if channel and f"{title}" in text:
                raw[channel][title] += 1
                shown[channel][title] += 1
    message_ids: dict[str, set[str]] = {}
    for message in smtp.messages:
        title = next((t for t in set(title_of.values()) if t in str(message["Subject"])), None)
        if title is not None:
            raw["EMAIL"][title] += 1
            message_ids.setdefault(title, set()).add(str(message["Message-ID"]))
    for title, seen in message_ids.items():
        shown["EMAIL"][title] = len(seen)  # a mail reader shows one message per Message-ID
    seen_ids: dict[str, set[str]] = {}
    for webhook_id, body in zip(receiver.ids, receiver.bodies, strict=True):
        found = next((t for t in set(title_of.values()) if t in json.dumps(body)), "?")
        raw["WEBHOOK"][found] += 1
        seen_ids.setdefault(found, set()).add(webhook_id)
    for title, seen in seen_ids.items():
        shown["WEBHOOK"][title] = len(seen)  # the receiver handles each webhook-id once
    duplicated: set[tuple[str, str]] = set()
    for channel in CHANNELS:
        figures.duplicates[channel] = sum(max(0, n - 1) for n in raw[channel].values())
        figures.shown_twice[channel] = sum(max(0, n - 1) for n in shown[channel].values())
        duplicated |= {(channel, t) for t, n in raw[channel].items() if n > 1}
        missing = [t for t in title_of.values() if raw[channel][t] == 0]
        figures.problems += [f"{channel} never received {t}" for t in missing[:10]]
    per = 1000 / max(1, figures.deliveries)
    figures.duplicates_per_1000 = round(per * sum(figures.duplicates.values()), 1)
    figures.shown_twice_per_1000 = round(per * sum(figures.shown_twice.values()), 1)
    flagged = {(r["channel"], r["title"]) for r in rows if r["possibly_duplicated"]}
    figures.flagged = len(flagged)
    figures.silent_duplicates = len(duplicated - flagged)
    figures.silent_per_1000_without_mark = round(per * sum(figures.duplicates.values()), 1)
    # The API: each flagged page's delivery says so, and its incident's timeline too.
    incidents = {r["incident_id"] for r in rows if r["possibly_duplicated"] and r["incident_id"]}
    for incident_id in sorted(incidents, key=str)[:50]:
        async with http.get(f"{api.url}/api/incidents/{incident_id}", headers=account.headers) as resp:
            assert resp.status == 200, await resp.text()
            timeline = (await resp.json())["incident"]["timeline"]
        kinds = [e["kind"] for e in timeline]
        flags = [e["delivery"]["possibly_duplicated"] for e in timeline if e.get("delivery")]
        if "possibly_duplicated" not in kinds or not any(flags):
            figures.timeline_missing.append(f"incident {incident_id}: {kinds}")


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_artefact(results: list[CrashFigures], folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = [{**asdict(r), "sound": r.sound} for r in results]
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Side effect then crash (issue 17, scenario 2)",
        "",
        f"Written by tests/faults/test_send_then_crash.py, {stamp()}; "
        "a 2-core shared machine. Every provider takes each message and holds its answer; the worker is "
        "SIGKILLed with every send of the round held, and a new worker re-runs them. Per 1,000 deliveries.",
        "",
        "| run | alerts accepted | lost | deliveries | sends the kill left unrecorded | duplicates at the "
        "providers (SMS / push / email / webhook) | shown twice, after the keys | possibly_duplicated "
        "recorded | silent duplicates (without the mark: every one) | recovery after the last kill |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r.duplicates
        recovery = "never (deadline)" if r.recovery_s is None else f"{r.recovery_s:g} s"
        lines.append(
            f"| {r.size['name']} | {r.accepted} | {r.lost} | {r.deliveries} | {r.crashed_sends} | "
            f"{r.duplicates_per_1000:g} ({d.get('SMS', 0)} / {d.get('PUSH_NOTIF', 0)} / "
            f"{d.get('EMAIL', 0)} / {d.get('WEBHOOK', 0)}) | {r.shown_twice_per_1000:g} | {r.flagged} | "
            f"{r.silent_duplicates} "
            f"({r.silent_per_1000_without_mark:g} per 1,000) | {recovery} |"
        )
    for r in results:
        problems = r.problems[:20] + r.timeline_missing[:20]
        if problems:
            lines += ["", f"## {r.size['name']}: what went wrong", "", *[f"- {p}" for p in problems]]
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return folder / f"{stem}.md"
