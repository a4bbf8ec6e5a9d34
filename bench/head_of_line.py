"""Healthy email latency while one provider hangs: no per-channel limit against Monoduty's.

One worker (200 job slots, Monoduty's settings) in this process; a local ntfy that never answers on
one topic, and a local SMTP server. Each run first queues ``--hung`` alerts to the hung topic,
waits until the worker has sent as many of them as it will at once, then sends ``--emails`` email
alerts on another webhook, one every ``--interval`` seconds, and measures accept -> SMTP server.
Three runs in the same process: no hung provider (the baseline), the hung provider with the
per-channel limit switched off (as before it existed), and with the default limit.

    python -m bench.head_of_line [--hung 250] [--emails 10] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from engine import db, queue
from engine.auth.users import create_user
from engine.settings import NtfySettings, Settings, SmtpSettings
from engine.webhooks import WebhookInput, create_webhook
from tests.support.processes import wait_until
from tests.support.providers import SmtpServer
from tests.support.services import Services, provision
from workers.worker import build_worker

HUNG_TOPIC = "hung-topic"


class TimedSmtp(SmtpServer):
    """The tests' SMTP server, noting when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        self.arrivals[str(self.messages[-1]["Subject"])] = time.time()
        return answer


class HungNtfy:
    """ntfy's publish API that never answers on one topic (until released)."""

    def __init__(self) -> None:
        self.hung = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["topic"] == HUNG_TOPIC:
            self.hung += 1
            await self.release.wait()
        return web.json_response({"id": uuid.uuid4().hex[:12]})


async def run(
    name: str, settings: Settings, ntfy: HungNtfy, smtp: TimedSmtp, hung: int, emails: int, interval: float
) -> list[float]:
    assert settings.database_url and settings.redis_url
    pool = await db.create_pool(settings.database_url)
    redis = await queue.connect(settings.redis_url)
    await redis.flushdb()
    async with pool.acquire() as conn:
        user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
        push_body = WebhookInput(
            name="hung", notification_types=["PUSH_NOTIF"], target_channels={"push": HUNG_TOPIC}
        )
        push = await create_webhook(conn, user, push_body, {"PUSH_NOTIF"})
        email_body = WebhookInput(
            name="healthy", notification_types=["EMAIL"], target_channels={"email": "a@example.com"}
        )
        email = await create_webhook(conn, user, email_body, {"EMAIL"})
    worker = build_worker(settings)
    task = asyncio.create_task(worker.main())

    async def accept(webhook: dict[str, Any], title: str) -> None:
        body = f'{{"title": "{title}"}}'
        alert_id, webhook_id = str(uuid.uuid4()), str(webhook["id"])
        now = datetime.now(UTC)
        await queue.enqueue_alert(
            redis, alert_id, webhook_id, body=body, content_type="application/json", received_at=now
        )

    ntfy.hung = 0
    ntfy.release.clear()
    for n in range(hung):
        await accept(push, f"hung {n}")
    if hung:
        expected = min(hung, settings.channel_concurrency, settings.worker_concurrency)
        await wait_until(lambda: ntfy.hung >= expected, "the hung sends to take their slots", timeout=60)
    sent: dict[str, float] = {}
    for n in range(emails):
        title = f"{name} email <{n}>"
        sent[title] = time.time()
        await accept(email, title)
        await asyncio.sleep(interval)
    what = f"{name}: the emails (arrived: {list(smtp.arrivals)})"
    await wait_until(lambda: all(any(t in s for s in smtp.arrivals) for t in sent), what, timeout=300)
    latencies = [next(smtp.arrivals[s] for s in smtp.arrivals if t in s) - sent[t] for t in sent]
    ntfy.release.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    await redis.aclose()
    await pool.close()
    return latencies


async def compare(services: Services, hung: int, emails: int, interval: float) -> None:
    ntfy = HungNtfy()
    app = web.Application()
    app.router.add_post("/{topic}", ntfy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    smtp = TimedSmtp()
    smtp.__enter__()
    try:
        settings = Settings(
            database_url=services.database_url,
            redis_url=services.redis_url,
            ntfy=NtfySettings(f"http://127.0.0.1:{port}"),
            smtp=SmtpSettings(smtp.host, smtp.port, None, None, "none", "alerts@monoduty.test"),
        )
        unlimited = settings.with_(channel_concurrency=settings.worker_concurrency)
        runs = [
            ("no hung provider", settings, 0),
            ("hung, no limit", unlimited, hung),
            (f"hung, limit {settings.channel_concurrency}", settings, hung),
        ]
        results = []
        for name, run_settings, hung_alerts in runs:
            latencies = await run(name, run_settings, ntfy, smtp, hung_alerts, emails, interval)
            print(f"{name}: done", flush=True)
            results.append((name, latencies))
    finally:
        ntfy.release.set()
        smtp.__exit__()
        await runner.cleanup()
    print(
        f"{hung} alerts hung on one ntfy topic (provider timeout {settings.provider_timeout:g} s), "
        f"{emails} emails {interval:g} s apart, one worker process, {settings.worker_concurrency} job slots"
    )
    for name, latencies in results:
        p50, worst = statistics.median(latencies), max(latencies)
        print(f"{name:<20} email accept->SMTP: p50 {p50 * 1000:8.1f} ms, max {worst * 1000:8.1f} ms")
    base = statistics.median(results[0][1])
    print(
        "ratio to no hung provider (p50): "
        + ", ".join(f"{n} {statistics.median(r) / base:.1f}x" for n, r in results[1:])
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hung", type=int, default=250)
    parser.add_argument("--emails", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    with provision() as services:  # outside the event loop: it runs its own set-up loop
        asyncio.run(compare(services, args.hung, args.emails, args.interval))
