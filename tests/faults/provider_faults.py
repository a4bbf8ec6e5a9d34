"""Scenario 6 of issue 17, provider faults: its run, its figures and its artefact.

A real `monoduty api` and one `monoduty worker` (provider timeout 3 s, 3 attempts); the local
Twilio and ntfy (tests/support/providers.py) answer each fault's target as scripted, all at once:

- hang: an SMS number that never answers (its webhook's push goes to a healthy topic);
- 429: an SMS number answering ``429 Retry-After: 2`` once;
- 5xx forever: step 1 of an escalation policy, an SMS number answering 503 to every attempt
  (step 2, 30 minutes later by its delay, pages a push topic);
- slow drip: a push topic whose answer comes one byte every 0.2 s;
- enormous: a push topic answering 200 with a 300 MB body;
- a healthy webhook (email and push) posted while the hang holds its sends;
- then the same Twilio status callback 100 times, and forged ones (a wrong signature, none).

Judged from the rows, the API and what the providers received; ``problems`` lists what is wrong.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from tests.faults.storm import PUBLIC_URL, TimedSmtp, api_process, worker_env
from tests.support.escalation import channel, new_policy, policy_webhook, step
from tests.support.factories import Account
from tests.support.faults import WorkerProcess
from tests.support.processes import ApiProcess, wait_until
from tests.support.providers import FakeProviders, Reply, Request
from tests.support.services import Services
from tests.support.twilio_receipts import StatusCallbacks

PROVIDER_TIMEOUT = 3
MAX_ATTEMPTS = 3
RETRY_AFTER = 2
ENORMOUS = 300 * 1024 * 1024
HANG, RATE, BROKEN = "+14155550161", "+14155550162", "+14155550163"
HANG_SIDE, NEXT_STEP, DRIP, HUGE, HEALTHY = (
    "faults-side",
    "faults-next",
    "faults-drip",
    "faults-huge",
    "faults-ok",
)
HEALTHY_EMAIL = "healthy@example.com"
NAMES = {
    HANG: "hang (SMS)",
    HANG_SIDE: "the hung webhook's push",
    RATE: "429 Retry-After (SMS)",
    BROKEN: "5xx forever (SMS, escalation step 1)",
    NEXT_STEP: "escalation step 2 (push)",
    DRIP: "slow drip (push)",
    HUGE: "enormous answer (push)",
    HEALTHY: "healthy webhook, push",
    HEALTHY_EMAIL: "healthy webhook, email",
}
STORM = 100


@dataclass
class FaultFigures:
    outcomes: dict[str, str] = field(default_factory=dict)  # fault -> "status after N attempts: error"
    retry_after_waited_s: float | None = None  # the 429's second try came this long after the first
    healthy_delivered_before_hang_failed: bool = False
    escalation_moved_on_s: float | None = None  # 5xx delivery failed -> step 2's push arrived
    enormous_streamed_mb: float = 0.0  # what the provider got to write before the worker hung up
    worker_peak_rss_mb: float = 0.0
    worker_rss_before_mb: float = 0.0
    callback_storm: dict[str, int] = field(default_factory=dict)  # answer status -> count
    receipt_events_added_by_repeats: int = 0  # timeline events the 99 repeats added (none expected)
    forged: dict[str, int] = field(default_factory=dict)  # kind of forgery -> answer status
    possibly_duplicated: list[str] = field(default_factory=list)  # the deliveries recorded so
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class ApiClient:
    """What tests/support's API helpers call on an aiohttp TestClient (``post``, ``get``), for a
    real `monoduty api` process."""

    def __init__(self, http: aiohttp.ClientSession, api: ApiProcess) -> None:
        self.http = http
        self.api = api

    async def post(self, path: str, **options: Any) -> aiohttp.ClientResponse:
        return await self.http.post(self.api.url + path, **options)

    async def get(self, path: str, **options: Any) -> aiohttp.ClientResponse:
        return await self.http.get(self.api.url + path, **options)


def rss_mb(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def make_webhook(
    client: ApiClient, account: Account, name: str, targets: dict[str, str]
) -> dict[str, Any]:
    kinds = {"sms": "SMS", "push": "PUSH_NOTIF", "email": "EMAIL"}
    body = {
        "name": name,
        "dedupBy": "none",
        "notificationTypes": [kinds[k] for k in targets],
        "targetChannels": targets,
    }
    resp = await client.post("/api/webhooks", json=body, headers=account.headers)
    assert resp.status == 201, await resp.text()
    return cast(dict[str, Any], (await resp.json())["webhook"])


async def post_alert(client: ApiClient, webhook: dict[str, Any], title: str) -> str:
    resp = await client.post(webhook["webhook_url"].removeprefix(PUBLIC_URL), json={"title": title})
    assert resp.status == 202, await resp.text()
    return cast(str, (await resp.json())["alert_id"])


async def delivery_to(pool: asyncpg.Pool, target: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT id, incident_id, status, attempts, last_error, finished_at, receipt_status, "
            "possibly_duplicated, "
            "extract(epoch FROM finished_at)::float8 AS finished FROM deliveries WHERE target = $1 "
            "ORDER BY created_at DESC LIMIT 1",
            target,
        )


async def final(pool: asyncpg.Pool, target: str) -> asyncpg.Record | None:
    row = await delivery_to(pool, target)
    return row if row is not None and row["status"] != "pending" else None


def arrivals(fake: FakeProviders, target: str) -> list[Request]:
    return [r for r in fake.requests if r.target == target]


async def run_faults(
    services: Services, pool: asyncpg.Pool, account: Account, fake: FakeProviders, folder: Path
) -> FaultFigures:
    figures = FaultFigures()
    began = time.monotonic()
    fake.script(HANG, *[Reply(hang=True)] * MAX_ATTEMPTS)
    fake.script(RATE, Reply(429, headers={"Retry-After": str(RETRY_AFTER)}))
    fake.script(BROKEN, *[Reply(503)] * MAX_ATTEMPTS)
    fake.script(DRIP, *[Reply(drip=0.2)] * MAX_ATTEMPTS)
    fake.script(HUGE, Reply(size=ENORMOUS))
    with TimedSmtp() as smtp:
        env = {
            **worker_env(services, fake, smtp),
            "MONODUTY_PROVIDER_TIMEOUT": str(PROVIDER_TIMEOUT),
            "MONODUTY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        }
        async with api_process(services, env, folder) as api, aiohttp.ClientSession() as http:
            client = ApiClient(http, api)
            test_client = cast(TestClient, client)  # the helpers call post/get only
            worker = WorkerProcess(folder / "worker.log", **env)
            try:
                await wait_until(lambda: "Starting worker" in worker.output(), "the worker to start", 60)
                figures.worker_rss_before_mb = rss_mb(worker.pid, "VmRSS")
                hang = await make_webhook(client, account, "hang", {"sms": HANG, "push": HANG_SIDE})
                rate = await make_webhook(client, account, "429", {"sms": RATE})
                drip = await make_webhook(client, account, "drip", {"push": DRIP})
                huge = await make_webhook(client, account, "enormous", {"push": HUGE})
                healthy = await make_webhook(
                    client, account, "healthy", {"email": HEALTHY_EMAIL, "push": HEALTHY}
                )
                policy = await new_policy(
                    test_client,
                    account,
                    step(30, channel("SMS", BROKEN)),
                    step(30, channel("PUSH_NOTIF", NEXT_STEP)),
                    name="faults",
                )
                broken = await policy_webhook(test_client, account, policy)
                for webhook, title in [(hang, "hang"), (rate, "429"), (drip, "drip"), (huge, "enormous")]:
                    await post_alert(client, webhook, f"faults {title}")
                await post_alert(client, broken, "faults 5xx forever")
                await wait_until(lambda: arrivals(fake, HANG), "the hung SMS to be taken", 30)
                await post_alert(client, healthy, "faults healthy")
                targets = [HANG, HANG_SIDE, RATE, BROKEN, NEXT_STEP, DRIP, HUGE, HEALTHY, HEALTHY_EMAIL]

                async def all_final() -> bool:
                    return all([await final(pool, t) for t in targets])

                await wait_until(all_final, "every fault's delivery to be final", 120)
                figures.worker_peak_rss_mb = rss_mb(worker.pid, "VmHWM")
                figures.enormous_streamed_mb = round(fake.streamed / 1024 / 1024, 1)
                await judge_deliveries(figures, pool, fake)
                await storm_callbacks(figures, pool, test_client, fake)
                if not worker.alive():
                    figures.problems.append(f"the worker exited: {worker.output()[-1500:]}")
            finally:
                fake.release()
                worker.stop()
    figures.seconds = round(time.monotonic() - began, 1)
    return figures


async def judge_deliveries(figures: FaultFigures, pool: asyncpg.Pool, fake: FakeProviders) -> None:
    rows = {t: await delivery_to(pool, t) for t in NAMES}
    for target, row in rows.items():
        assert row is not None, target
        error = f": {row['last_error']}" if row["last_error"] else ""
        figures.outcomes[NAMES[target]] = f"{row['status']} after {row['attempts']} attempt(s){error}"
    expect = {
        HANG: ("failed", MAX_ATTEMPTS, "no answer within"),
        DRIP: ("failed", MAX_ATTEMPTS, "no answer within"),
        BROKEN: ("failed", MAX_ATTEMPTS, "503"),
        RATE: ("delivered", 2, None),
        HUGE: ("delivered", 1, None),
        HANG_SIDE: ("delivered", 1, None),
        NEXT_STEP: ("delivered", 1, None),
        HEALTHY: ("delivered", 1, None),
        HEALTHY_EMAIL: ("delivered", 1, None),
    }
    for target, (status, attempts, error) in expect.items():
        row, name = rows[target], NAMES[target]
        assert row is not None
        if (row["status"], row["attempts"]) != (status, attempts) or (
            error and error not in (row["last_error"] or "")
        ):
            figures.problems.append(
                f"{name}: {figures.outcomes[name]}, wanted {status} after {attempts} ({error})"
            )
    # A timeout may hide a send the provider took: its retries are possibly duplicated; a 503 is not.
    figures.possibly_duplicated = sorted(
        NAMES[t] for t, row in rows.items() if row and row["possibly_duplicated"]
    )
    if figures.possibly_duplicated != sorted([NAMES[HANG], NAMES[DRIP]]):
        figures.problems.append(
            f"possibly duplicated: {figures.possibly_duplicated}, wanted the hang and the drip"
        )
    tries = arrivals(fake, RATE)
    if len(tries) == 2:
        figures.retry_after_waited_s = round(tries[1].at - tries[0].at, 2)
        if figures.retry_after_waited_s < RETRY_AFTER:
            figures.problems.append(f"the 429 was tried again after {figures.retry_after_waited_s}s")
    else:
        figures.problems.append(f"the 429's number got {len(tries)} requests")
    hang, ok = rows[HANG], rows[HEALTHY]
    assert hang is not None and ok is not None
    figures.healthy_delivered_before_hang_failed = ok["finished"] < hang["finished"]
    if not figures.healthy_delivered_before_hang_failed:
        figures.problems.append("the healthy webhook waited for the hung provider")
    broken, moved = rows[BROKEN], arrivals(fake, NEXT_STEP)
    assert broken is not None
    if moved:
        figures.escalation_moved_on_s = round(moved[0].at - broken["finished"], 2)
    if len(arrivals(fake, BROKEN)) != MAX_ATTEMPTS:
        figures.problems.append(f"5xx forever: {len(arrivals(fake, BROKEN))} requests, not {MAX_ATTEMPTS}")
    if figures.enormous_streamed_mb * 1024 * 1024 >= ENORMOUS:
        figures.problems.append("the worker read the whole enormous answer")


async def storm_callbacks(
    figures: FaultFigures,
    pool: asyncpg.Pool,
    test_client: TestClient,
    fake: FakeProviders,
) -> None:
    """The RATE SMS's 'delivered' callback 100 times, then forged 'undelivered' ones."""
    sms = [r for r in arrivals(fake, RATE) if r.sid is not None][-1]
    row = await delivery_to(pool, RATE)
    assert row is not None

    async def events() -> int:
        async with pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM incident_events WHERE incident_id = $1", row["incident_id"]
                )
            )

    receipts = StatusCallbacks(test_client)
    answers = [await receipts.message(sms, "delivered")]
    after_first = await events()
    answers += [await receipts.replay() for _ in range(STORM - 1)]
    figures.receipt_events_added_by_repeats = await events() - after_first
    for status, _ in answers:
        figures.callback_storm[str(status)] = figures.callback_storm.get(str(status), 0) + 1
    forged = {
        "wrong signature": await receipts.message(
            sms, "undelivered", error_code="30003", signed_with="forged-token"
        ),
        "no signature": await receipts.message(sms, "undelivered", error_code="30003", signed_with=""),
    }
    figures.forged = {k: status for k, (status, _) in forged.items()}
    row = await delivery_to(pool, RATE)
    assert row is not None
    if row["receipt_status"] != "delivered":
        figures.problems.append(f"the stormed SMS's receipt is {row['receipt_status']}")
    if any(status < 400 for status in figures.forged.values()):
        figures.problems.append(f"a forged callback was accepted: {figures.forged}")
    if set(figures.callback_storm) != {"200"}:
        figures.problems.append(f"the callback storm was answered {figures.callback_storm}")
    if figures.receipt_events_added_by_repeats:
        figures.problems.append(
            f"{figures.receipt_events_added_by_repeats} timeline events from repeated callbacks"
        )


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_artefact(figures: FaultFigures, folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    lines = [
        "# Provider faults (issue 17, scenario 6)",
        "",
        f"Written by tests/faults/test_provider_faults.py, {stamp()}; a 2-core shared machine. One worker, "
        f"provider timeout {PROVIDER_TIMEOUT} s, {MAX_ATTEMPTS} attempts, every fault at once.",
        "",
        "| fault | outcome |",
        "|---|---|",
        *[f"| {name} | {outcome} |" for name, outcome in figures.outcomes.items()],
        f"| 429 Retry-After: {RETRY_AFTER} | tried again after {figures.retry_after_waited_s} s |",
        f"| 5xx forever, escalation | step 2 paged {figures.escalation_moved_on_s} s after step 1 failed "
        "(its delay: 30 min) |",
        f"| enormous answer ({ENORMOUS // 1024 // 1024} MB) | {figures.enormous_streamed_mb} MB written "
        f"before the worker hung up; worker RSS {figures.worker_rss_before_mb} MB at start, peak "
        f"{figures.worker_peak_rss_mb} MB |",
        f"| healthy webhook during the hang | delivered before the hung SMS failed: "
        f"{'yes' if figures.healthy_delivered_before_hang_failed else 'NO'} |",
        f"| the same status callback x{STORM} | answers {figures.callback_storm}; timeline events added by "
        f"the repeats: {figures.receipt_events_added_by_repeats} |",
        f"| forged callbacks | {figures.forged} |",
        f"| recorded possibly duplicated | {', '.join(figures.possibly_duplicated) or 'none'} |",
    ]
    if figures.problems:
        lines += ["", "## What went wrong", "", *[f"- {p}" for p in figures.problems]]
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return folder / f"{stem}.md"
