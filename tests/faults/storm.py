"""Scenario 1 of issue 17, the worker SIGKILL storm: its run, its figures and its artefact.

A real `monoduty api` and three `monoduty worker` processes on the session's PostgreSQL and Redis;
four webhooks paging push (the local ntfy), SMS (the local Twilio) and email (a local SMTP server),
every provider answering after ``provider_delay``. Alerts are posted at a steady rate (each re-posted
after anything but a 202, as monitoring systems do) while a random worker is SIGKILLed every ~2 s
and a new one started in its place. Then the backlog drains (bounded by a deadline) and the run is
judged from the database and from what the providers received:

- lost: accepted alerts not final (``successful``) once drained;
- missing: deliveries an accepted alert should have (one per channel target) that are not
  ``delivered`` or that no provider ever received;
- duplicates: sends a provider received beyond the first for the same alert, channel and target,
  per 1,000 deliveries;
- accept-to-send: the first arrival at the provider minus the alert's ``received_at``;
- counters: each webhook's statistics (``GET /api/webhooks/{id}``) against its rows;
- recovery: from the last kill until every accepted alert's deliveries were final.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from engine.channels.registry import TARGET_KEYS
from tests.support.factories import Account
from tests.support.faults import WorkerProcess
from tests.support.processes import UNCAPPED, ApiProcess, wait_until
from tests.support.providers import FakeProviders, SmtpServer
from tests.support.services import Services

PUBLIC_URL = "http://monoduty.test"
# The claim of a killed worker's job lapses after the job timeout + 5 s: shorter than the default
# 20 s so that the storm's re-runs happen within the run, long enough that a try on a loaded
# machine seldom outlives its deadline (each one that does is deferred and may send again).
JOB_TIMEOUT = 10
PROVIDER_TIMEOUT = 5
WORKERS = 3
# Channel targets of the four webhooks: every channel on more than one webhook, one webhook
# paging all three.
WEBHOOKS: list[dict[str, Any]] = [
    {"notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "storm-a"}},
    {
        "notificationTypes": ["SMS", "PUSH_NOTIF"],
        "targetChannels": {"sms": "+14155550111", "push": "storm-b"},
    },
    {
        "notificationTypes": ["EMAIL", "SMS"],
        "targetChannels": {"email": "ops@example.com", "sms": "+14155550112"},
    },
    {
        "notificationTypes": ["EMAIL", "SMS", "PUSH_NOTIF"],
        "targetChannels": {"email": "oncall@example.com", "sms": "+14155550113", "push": "storm-c"},
    },
]
# A delivery row's channel type -> the targetChannels key (and the providers' name for it here).
KEY_OF_CHANNEL = dict(TARGET_KEYS)
TAG = re.compile(r"storm-[0-9a-f]{6}-\d+")


@dataclass(frozen=True)
class StormSize:
    name: str
    alerts: int
    provider_delay: float  # seconds every provider takes to answer
    rate: float  # alerts offered per second
    max_kills: int
    kill_every: float = 2.0  # seconds between kills, ± 25 %
    drain_timeout: float = 120.0  # seconds after the last alert for the backlog to drain
    seed: int = 17


@dataclass
class StormFigures:
    size: dict[str, Any]
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # non-202 answers, re-posted
    lost: int = 0
    lost_alerts: list[str] = field(default_factory=list)
    deliveries: int = 0  # expected: one per channel target of each accepted alert
    missing: int = 0
    missing_rows: list[str] = field(default_factory=list)
    provider_sends: int = 0
    duplicate_sends: int = 0
    duplicates_per_1000: float = 0.0
    accept_to_send_p50_ms: float = 0.0
    accept_to_send_p99_ms: float = 0.0
    kills: int = 0
    worker_exits: list[str] = field(default_factory=list)  # workers that died without being killed
    counters_exact: bool = False
    counter_mismatches: list[str] = field(default_factory=list)
    recovery_s: float | None = None  # last kill -> every delivery final (None: never drained)
    seconds: float = 0.0

    @property
    def sound(self) -> bool:
        return (
            self.lost == 0
            and self.missing == 0
            and self.counters_exact
            and not self.worker_exits
            and self.recovery_s is not None
        )


class TimedSmtp(SmtpServer):
    """The tests' SMTP server answering DATA after ``delay`` seconds, each message's arrival kept."""

    delay = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.time()
        if self.delay:
            await asyncio.sleep(self.delay)  # the provider's latency, not synchronisation
        answer = await super().handle_DATA(server, session, envelope)
        self.arrivals.append((arrived, self.messages[-1]))
        return answer


def worker_env(services: Services, fake: FakeProviders, smtp: SmtpServer) -> dict[str, str]:
    return {
        "MONODUTY_DATABASE_URL": services.database_url,
        "MONODUTY_REDIS_URL": services.redis_url,
        "MONODUTY_PUBLIC_URL": PUBLIC_URL,
        "MONODUTY_NTFY_URL": fake.url,
        "MONODUTY_TWILIO_ACCOUNT_SID": "AC" + "5f0c2a9e" * 4,
        "MONODUTY_TWILIO_AUTH_TOKEN": "twilio-token-3b9e51d07c",
        "MONODUTY_TWILIO_FROM": "+15005550006",
        "MONODUTY_TWILIO_BASE_URL": fake.url,
        "MONODUTY_SMTP_HOST": smtp.host,
        "MONODUTY_SMTP_PORT": str(smtp.port),
        "MONODUTY_SMTP_TLS": "none",
        "MONODUTY_SMTP_USERNAME": "monoduty",
        "MONODUTY_SMTP_PASSWORD": "smtp-password-93ab1f",
        "MONODUTY_SMTP_FROM": "alerts@monoduty.test",
        "MONODUTY_JOB_TIMEOUT": str(JOB_TIMEOUT),
        "MONODUTY_PROVIDER_TIMEOUT": str(PROVIDER_TIMEOUT),
        "MONODUTY_RETRY_BASE_DELAY": "0.05",
        # Every alert to one number: the per-contact SMS throttle would hold most of them back.
        "MONODUTY_THROTTLE_SMS": "off",
        "MONODUTY_RATE_LIMIT_INBOUND": "1000000/minute",
        "MONODUTY_REQUIRE_HTTPS": "false",
        **UNCAPPED,
    }


class Workers:
    """Worker processes (three by default); ``kill_one`` SIGKILLs a random one and starts another
    in its place."""

    def __init__(self, env: dict[str, str], folder: Path, rng: random.Random, count: int = WORKERS) -> None:
        self.env = env
        self.folder = folder
        self.rng = rng
        self.started = 0
        self.procs = [self._start() for _ in range(count)]
        self.killed: list[WorkerProcess] = []
        self.last_kill: float | None = None

    def _start(self) -> WorkerProcess:
        self.started += 1
        return WorkerProcess(self.folder / f"worker-{self.started}.log", **self.env)

    def kill_one(self) -> None:
        n = self.rng.randrange(len(self.procs))
        victim = self.procs[n]
        if victim.alive():
            victim.kill()
        self.killed.append(victim)
        self.last_kill = time.monotonic()
        self.procs[n] = self._start()

    def died(self) -> list[str]:
        """Workers that exited without being killed: their log's tail."""
        return [f"{p.log.name}: {p.output()[-1500:]}" for p in self.procs if not p.alive()]

    def stop(self) -> list[int]:
        return [p.stop() for p in self.procs]


@contextlib.asynccontextmanager
async def api_process(services: Services, env: dict[str, str], folder: Path) -> AsyncIterator[ApiProcess]:
    settings = {k: v for k, v in env.items() if k not in ("MONODUTY_DATABASE_URL", "MONODUTY_REDIS_URL")}
    api = await asyncio.to_thread(ApiProcess, services, folder / "api.log", **settings)
    try:
        yield api
    finally:
        api.stop()


async def create_webhooks(
    http: aiohttp.ClientSession, api: ApiProcess, account: Account
) -> list[dict[str, Any]]:
    made = []
    for n, spec in enumerate(WEBHOOKS):
        body = {"name": f"storm {n}", "dedupBy": "none", **spec}
        async with http.post(f"{api.url}/api/webhooks", json=body, headers=account.headers) as resp:
            assert resp.status == 201, await resp.text()
            made.append((await resp.json())["webhook"])
    return made


class Sender:
    """Posts ``alerts`` alerts at ``rate`` a second round-robin over the webhooks, each re-posted
    (after 50 ms) until it is answered 202 or the deadline passes."""

    def __init__(self, http: aiohttp.ClientSession, api: ApiProcess, webhooks: list[dict[str, Any]]) -> None:
        self.http = http
        self.api = api
        self.webhooks = webhooks
        self.run_tag = uuid.uuid4().hex[:6]
        self.accepted: dict[str, tuple[str, int]] = {}  # alert id -> (tag, webhook index)
        self.accepted_at: dict[str, float] = {}  # alert id -> epoch of its 202
        self.refused: Counter[str] = Counter()
        self.answers: list[tuple[float, float, str]] = []  # (posted at epoch, seconds to answer, status)

    async def send_all(self, alerts: int, rate: float, deadline: float) -> None:
        start = time.monotonic()
        gate = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            # Pacing: alert n is due n / rate seconds after the start (a steady rate, not a wait
            # for something to happen).
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            async with gate:
                await self._post_until_accepted(n, deadline)

        await asyncio.gather(*(one(n) for n in range(alerts)))

    async def _post_until_accepted(self, n: int, deadline: float) -> None:
        index = n % len(self.webhooks)
        path = self.webhooks[index]["webhook_url"].removeprefix(PUBLIC_URL)
        tag = f"storm-{self.run_tag}-{n}"
        body = {"title": f"{tag} down", "message": f"{tag} checkout is failing"}
        while time.monotonic() < deadline:
            posted = time.time()
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with self.http.post(self.api.url + path, json=body, timeout=timeout) as resp:
                    self.answers.append((posted, time.time() - posted, str(resp.status)))
                    if resp.status == 202:
                        alert_id = (await resp.json())["alert_id"]
                        self.accepted[alert_id] = (tag, index)
                        self.accepted_at[alert_id] = time.time()
                        return
                    self.refused[str(resp.status)] += 1
                    if resp.status == 503 and "Retry-After" not in resp.headers:
                        self.refused["503 without Retry-After"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers.append((posted, time.time() - posted, type(exc).__name__))
                self.refused[type(exc).__name__] += 1
            await asyncio.sleep(0.05)  # a sender's pause before it posts again


async def unfinished(pool: asyncpg.Pool, alert_ids: list[uuid.UUID], expected: int) -> int:
    """Accepted alerts not yet final, plus deliveries not yet final or not yet made."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM alerts WHERE id = ANY($1::uuid[]) AND status <> 'pending') AS alerts,
                   (SELECT count(*) FROM deliveries
                    WHERE alert_id = ANY($1::uuid[]) AND status <> 'pending') AS deliveries
            """,
            alert_ids,
        )
    assert row is not None
    return (len(alert_ids) - int(row["alerts"])) + (expected - int(row["deliveries"]))


def provider_arrivals(fake: FakeProviders, smtp: TimedSmtp) -> list[tuple[str, str, str, float]]:
    """Every send the providers received: (alert tag, channel, target, arrival epoch)."""
    sends = []
    for request in fake.requests:
        text = request.form.get("Body", "") if request.kind == "sms" else request.body
        found = TAG.search(text)
        if found and request.kind in ("sms", "push"):
            sends.append((found.group(0), request.kind, request.target, request.at))
    for arrived, message in smtp.arrivals:
        found = TAG.search(str(message["Subject"]))
        if found:
            sends.append((found.group(0), "email", str(message["To"]), arrived))
    return sends


async def judge(
    figures: StormFigures,
    pool: asyncpg.Pool,
    http: aiohttp.ClientSession,
    api: ApiProcess,
    account: Account,
    webhooks: list[dict[str, Any]],
    sender: Sender,
    fake: FakeProviders,
    smtp: TimedSmtp,
) -> None:
    ids = [uuid.UUID(a) for a in sender.accepted]
    async with pool.acquire() as conn:
        alerts = {
            str(r["id"]): r
            for r in await conn.fetch(
                "SELECT id, status, extract(epoch FROM received_at)::float8 AS received FROM alerts "
                "WHERE id = ANY($1::uuid[])",
                ids,
            )
        }
        rows = await conn.fetch(
            "SELECT alert_id, channel, target, status FROM deliveries WHERE alert_id = ANY($1::uuid[])", ids
        )
    sends = provider_arrivals(fake, smtp)
    first_send: dict[tuple[str, str, str], float] = {}
    for tag, channel, target, at in sends:
        key = (tag, channel, target)
        first_send[key] = min(at, first_send.get(key, at))
    delivered = {
        (str(r["alert_id"]), KEY_OF_CHANNEL[r["channel"]], r["target"])
        for r in rows
        if r["status"] == "delivered"
    }

    figures.accepted = len(sender.accepted)
    figures.refused = dict(sender.refused)
    latencies = []
    for alert_id, (tag, index) in sender.accepted.items():
        alert = alerts.get(alert_id)
        if alert is None or alert["status"] != "successful":
            figures.lost_alerts.append(f"{alert_id} {tag}: {'no row' if alert is None else alert['status']}")
        for key, target in webhooks[index]["target_channels"].items():
            for one in target if isinstance(target, list) else [target]:
                channel = key
                figures.deliveries += 1
                sent = first_send.get((tag, channel, one))
                if (alert_id, channel, one) not in delivered or sent is None:
                    figures.missing_rows.append(
                        f"{alert_id} {tag} {channel} {one}: "
                        f"{'delivered' if (alert_id, channel, one) in delivered else 'not delivered'}, "
                        f"{'sent' if sent else 'never sent'}"
                    )
                elif alert is not None:
                    latencies.append((sent - alert["received"]) * 1000)
    figures.lost = len(figures.lost_alerts)
    figures.missing = len(figures.missing_rows)
    ours = {tag for tag, _ in sender.accepted.values()}
    counted = [s for s in sends if s[0] in ours]
    figures.provider_sends = len(counted)
    figures.duplicate_sends = len(counted) - len({s[:3] for s in counted})
    figures.duplicates_per_1000 = round(1000 * figures.duplicate_sends / max(1, figures.deliveries), 2)
    if latencies:
        cuts = (
            statistics.quantiles(latencies, n=100, method="inclusive")
            if len(latencies) > 1
            else latencies * 99
        )
        figures.accept_to_send_p50_ms = round(cuts[49], 1)
        figures.accept_to_send_p99_ms = round(cuts[98], 1)

    figures.counter_mismatches = await counter_mismatches(pool, http, api, account, webhooks)
    figures.counters_exact = not figures.counter_mismatches


async def counter_mismatches(
    pool: asyncpg.Pool,
    http: aiohttp.ClientSession,
    api: ApiProcess,
    account: Account,
    webhooks: list[dict[str, Any]],
) -> list[str]:
    """Each webhook's statistics as the API answers them, against its alert rows."""
    wrong = []
    for webhook in webhooks:
        async with http.get(f"{api.url}/api/webhooks/{webhook['id']}", headers=account.headers) as resp:
            assert resp.status == 200, await resp.text()
            stats = (await resp.json())["webhook"]["statistics"]
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'successful') AS successful, "
                "count(*) FILTER (WHERE status = 'failed') AS failed, "
                "count(*) FILTER (WHERE status = 'pending') AS pending FROM alerts WHERE webhook_id = $1",
                uuid.UUID(webhook["id"]),
            )
        assert row is not None
        rows = {k: int(row[k]) for k in ("total", "successful", "failed", "pending")}
        answered = {
            "total": stats["total_calls"],
            "successful": stats["successful_calls"],
            "failed": stats["failed_calls"],
            "pending": stats["pending_calls"],
        }
        if answered != rows:
            wrong.append(f"webhook {webhook['id']}: statistics {answered}, rows {rows}")
    return wrong


async def run_storm(
    size: StormSize,
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake: FakeProviders,
    folder: Path,
) -> StormFigures:
    """One storm of ``size``; its figures (the caller asserts them, after writing them out)."""
    figures = StormFigures(size=asdict(size))
    rng = random.Random(size.seed)
    began = time.monotonic()
    fake.delay = size.provider_delay
    with TimedSmtp() as smtp:
        smtp.delay = size.provider_delay
        env = worker_env(services, fake, smtp)
        async with api_process(services, env, folder) as api, aiohttp.ClientSession() as http:
            webhooks = await create_webhooks(http, api, account)
            workers = Workers(env, folder, rng)
            try:
                for proc in workers.procs:
                    await wait_until(lambda p=proc: "Starting worker" in p.output(), "a worker to start", 60)
                sender = Sender(http, api, webhooks)
                send_deadline = time.monotonic() + size.alerts / size.rate * 3 + 30
                sending = asyncio.create_task(sender.send_all(size.alerts, size.rate, send_deadline))
                expected = 0

                async def backlog() -> int:
                    nonlocal expected
                    expected = sum(len(webhooks[i]["target_channels"]) for _, i in sender.accepted.values())
                    return await unfinished(pool, [uuid.UUID(a) for a in sender.accepted], expected)

                drained_at: float | None = None
                drain_deadline = send_deadline + size.drain_timeout
                next_kill = time.monotonic() + size.kill_every
                # One loop, bounded by the deadlines: kill on the storm's rhythm while alerts are
                # sent or in flight (up to max_kills), and see when the backlog has drained.
                while time.monotonic() < drain_deadline:
                    if sending.done() and await backlog() == 0:
                        drained_at = time.monotonic()
                        break
                    assert not workers.died(), workers.died()
                    if len(workers.killed) < size.max_kills and time.monotonic() >= next_kill:
                        await asyncio.to_thread(workers.kill_one)
                        next_kill = time.monotonic() + size.kill_every * rng.uniform(0.75, 1.25)
                    await asyncio.sleep(0.1)  # the loop's polling tick
                await sending
                figures.kills = len(workers.killed)
                if drained_at is not None:
                    figures.recovery_s = round(drained_at - (workers.last_kill or drained_at), 1)
                figures.worker_exits = workers.died()
                await judge(figures, pool, http, api, account, webhooks, sender, fake, smtp)
            finally:
                exits = await asyncio.to_thread(workers.stop)
                figures.worker_exits += [f"worker exit code {c}" for c in exits if c != 0]
    figures.seconds = round(time.monotonic() - began, 1)
    return figures


def write_artefact(results: list[StormFigures], folder: Path, stem: str) -> Path:
    """``stem``.json (every figure, the failing rows included) and ``stem``.md (the table)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = [{**asdict(r), "sound": r.sound} for r in results]
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Worker SIGKILL storm (issue 17, scenario 1)",
        "",
        f"Written by tests/faults/test_worker_storm.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        "; "
        "a 2-core shared machine. One `monoduty api`, 3 `monoduty worker`s, 4 webhooks over push, SMS "
        "and email (local ntfy, Twilio and SMTP servers), a random worker SIGKILLed every ~2 s and "
        "restarted. Duplicates are counted at the providers, per 1,000 deliveries.",
        "",
        "| run | provider delay | alerts accepted | lost | deliveries | missing | duplicates per 1,000 "
        "| p50 / p99 accept-to-send | kills | counters exact | recovery after the last kill |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        recovery = "never (deadline)" if r.recovery_s is None else f"{r.recovery_s:g} s"
        lines.append(
            f"| {r.size['name']} | {r.size['provider_delay'] * 1000:g} ms | {r.accepted} | {r.lost} | "
            f"{r.deliveries} | {r.missing} | {r.duplicates_per_1000:g} ({r.duplicate_sends}) | "
            f"{r.accept_to_send_p50_ms:g} / {r.accept_to_send_p99_ms:g} ms | {r.kills} | "
            f"{'yes' if r.counters_exact else 'NO'} | {recovery} |"
        )
    for r in results:
        problems = r.lost_alerts[:20] + r.missing_rows[:20] + r.counter_mismatches + r.worker_exits
        if problems:
            lines += ["", f"## {r.size['name']}: what went wrong", "", *[f"- {p}" for p in problems]]
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return folder / f"{stem}.md"
