"""Deliveries per second and time to first send: arq's defaults against Monoduty's worker settings.

Both runs happen in this process, on the same services, against the same local SMS provider that
answers after a fixed delay (50 ms by default, like a real API), so the ratio between them is
what matters, not the absolute numbers on this machine.

    python -m bench.worker_throughput [--alerts 400] [--provider-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from engine import db, queue
from engine.auth.users import create_user
from engine.settings import Settings, TwilioSettings
from engine.webhooks import WebhookInput, create_webhook
from tests.support.services import Services, provision
from workers.worker import build_worker

SID, TOKEN = "AC" + "0" * 32, "bench-token"
IDLE_ALERTS = 20
COUNT_DELIVERED = """
SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE a.webhook_id = $1 AND d.status = 'delivered'
"""


@dataclass
class Run:
    name: str
    seconds: float  # to deliver the whole burst
    idle_ms: list[float]  # accept -> provider, one alert at a time on an idle worker

    def line(self, alerts: int) -> str:
        p50 = statistics.median(self.idle_ms)
        worst = max(self.idle_ms)
        return (
            f"{self.name:<16} burst: {alerts / self.seconds:7.1f} deliveries/s   "
            f"idle accept->provider: p50 {p50:6.1f} ms, max {worst:6.1f} ms"
        )


class SlowProvider:
    """Answers like Twilio's Messages API after a fixed delay; records when each alert arrived."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrivals: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
        await asyncio.sleep(self.delay)  # the provider's own latency, not synchronisation
        return web.json_response({"sid": "SM" + uuid.uuid4().hex}, status=201)


async def measure(
    name: str, settings: Settings, worker_options: dict, alerts: int, provider: SlowProvider
) -> Run:
    assert settings.database_url and settings.redis_url
    pool = await db.create_pool(settings.database_url)
    redis = await queue.connect(settings.redis_url)
    await redis.flushdb()
    async with pool.acquire() as conn:
        user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
        body = WebhookInput(name="bench", notification_types=["SMS"], target_channels={"sms": "+14155550123"})
        webhook = await create_webhook(conn, user, body, {"SMS"})
    worker = build_worker(settings, **worker_options)
    task = asyncio.create_task(worker.main())

    async def accept() -> None:
        await queue.enqueue_alert(
            redis,
            str(uuid.uuid4()),
            str(webhook["id"]),
            body='{"title": "bench"}',
            content_type="application/json",
            received_at=datetime.now(UTC),
        )

    async def delivered(n: int) -> None:
        deadline = time.monotonic() + 300
        while await pool.fetchval(COUNT_DELIVERED, webhook["id"]) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: not all delivered within 300 s")
            await asyncio.sleep(0.005)

    idle_ms = []
    for i in range(IDLE_ALERTS):
        provider.arrivals.clear()
        accepted = time.time()
        await accept()
        await delivered(i + 1)
        idle_ms.append((provider.arrivals[0] - accepted) * 1000)
    started = time.perf_counter()
    for _ in range(alerts):
        await accept()
    await delivered(IDLE_ALERTS + alerts)
    seconds = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    await redis.aclose()
    await pool.close()
    return Run(name, seconds, idle_ms)


async def compare(services: Services, alerts: int, provider_ms: int) -> None:
    provider = SlowProvider(provider_ms / 1000)
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", provider.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        settings = Settings(
            database_url=services.database_url,
            redis_url=services.redis_url,
            twilio=TwilioSettings(SID, TOKEN, "+15005550006", f"http://127.0.0.1:{port}"),
        )
        arq_defaults = {"max_jobs": 10, "poll_delay": 0.5, "job_timeout": 300}
        baseline = await measure("arq defaults", settings, arq_defaults, alerts, provider)
        ours = await measure("monoduty worker", settings, {}, alerts, provider)
    finally:
        await runner.cleanup()
    print(f"{alerts} alerts, one SMS each, provider answering in {provider_ms} ms, one worker process")
    print(baseline.line(alerts))
    print(ours.line(alerts))
    ratio = baseline.seconds / ours.seconds
    latency = statistics.median(baseline.idle_ms) / statistics.median(ours.idle_ms)
    print(f"ratio: {ratio:.1f}x the deliveries per second; {latency:.1f}x faster to the first send (p50)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=400)
    parser.add_argument("--provider-ms", type=int, default=50)
    args = parser.parse_args()
    with provision() as services:  # outside the event loop: it runs its own set-up loop
        asyncio.run(compare(services, args.alerts, args.provider_ms))
