"""What operators see: /metrics moving with real traffic, and log lines that carry ids but no secrets."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families

from engine.masking import mask_target
from engine.observability import logs
from engine.settings import NtfySettings, Settings, SmtpSettings, TwilioSettings
from tests.support.factories import Account, make_client, run_worker
from tests.support.logging_state import kept_logging
from tests.support.providers import (
    NTFY_TOKEN,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    Reply,
    SmtpServer,
)
from tests.support.services import Services

ALERT = {"title": "DB down", "message": "primary unreachable", "severity": "critical"}
PHONE = "+14155550123"
EMAIL = "oncall@example.com"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics answer, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(all_samples: dict, name: str, **labels: str) -> float:
    return all_samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: TestClient, **headers: str) -> str:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def create_webhook(client: TestClient, account: Account, body: dict) -> tuple[dict, str]:
    resp = await client.post("/api/webhooks", json=body, headers=account.headers)
    assert resp.status == 201, await resp.text()
    webhook = (await resp.json())["webhook"]
    return webhook, webhook["webhook_url"].removeprefix("http://monoduty.test")


async def test_metrics_move_with_an_alert_and_its_deliveries(
    client: TestClient, account: Account, settings: Settings
) -> None:
    before = samples(await scrape(client))
    assert value(before, "monoduty_alerts_accepted_total") == 0
    _, path = await create_webhook(
        client,
        account,
        {
            "name": "metrics",
            "notificationTypes": ["EMAIL", "PUSH_NOTIF"],
            "targetChannels": {"email": EMAIL, "push": "p"},
        },
    )
    resp = await client.post(path, json=ALERT)
    assert resp.status == 202
    queued = samples(await scrape(client))
    assert value(queued, "monoduty_queue_jobs", state="queued") == 1
    assert value(queued, "monoduty_alerts_accepted_total") == 1

    await run_worker(settings)
    text = await scrape(client)
    after = samples(text)
    token = path.rsplit("/", 1)[1]
    assert token not in text  # requests are named by route pattern, never by path
    assert value(after, "monoduty_http_requests_total", method="POST", route="/{token}", status="202") == 1
    assert (
        value(after, "monoduty_http_requests_total", method="POST", route="/api/webhooks", status="201") == 1
    )
    assert value(after, "monoduty_http_request_duration_seconds_count", route="/{token}") == 1
    assert value(after, "monoduty_http_request_duration_seconds_sum", route="/{token}") > 0
    for channel in ("EMAIL", "PUSH_NOTIF"):
        assert value(after, "monoduty_deliveries_total", channel=channel, outcome="delivered") == 1
        assert value(after, "monoduty_delivery_latency_seconds_count", channel=channel) == 1
        assert value(after, "monoduty_delivery_latency_seconds_bucket", channel=channel, le="+Inf") == 1
    assert value(after, "monoduty_alerts_finished_total", status="successful") == 1
    assert value(after, "monoduty_queue_jobs", state="queued") == 0


async def test_metrics_are_open_locally_and_need_the_token_otherwise(
    settings: Settings, redis: ArqRedis
) -> None:
    client = await make_client(settings.with_(metrics_token="metrics-secret-81f2"))
    try:
        assert (await client.get("/metrics")).status == 200  # loopback, no proxy in between
        relayed = {"X-Forwarded-For": "203.0.113.9"}
        resp = await client.get("/metrics", headers=relayed)
        assert resp.status == 401
        body = await resp.json()
        assert body["code"] == "UNAUTHORIZED" and body["success"] is False
        assert "metrics-secret" not in json.dumps(body)
        wrong = await client.get("/metrics", headers={**relayed, "Authorization": "Bearer nope"})
        assert wrong.status == 401
        right = await client.get(
            "/metrics", headers={**relayed, "Authorization": "Bearer metrics-secret-81f2"}
        )
        assert right.status == 200
        assert "monoduty_http_requests_total" in await right.text()
    finally:
        await client.close()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged during the test, as MONODUTY_LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    with kept_logging():
        logs.configure("json", "INFO", stream)  # as `monoduty api` and `monoduty worker` do
        yield stream


async def test_log_lines_carry_ids_and_never_secrets(
    services: Services,
    redis: ArqRedis,
    account: Account,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    json_log: io.StringIO,
) -> None:
    settings = Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        smtp=SmtpSettings(
            smtp_server.host, smtp_server.port, SMTP_USERNAME, SMTP_PASSWORD, "none", "a@monoduty.test"
        ),
        twilio=TwilioSettings(TWILIO_SID, TWILIO_TOKEN, "+15005550006", fake_providers.url),
        ntfy=NtfySettings(fake_providers.url, NTFY_TOKEN),
        retry_base_delay=0.01,
        worker_poll_delay=0.01,
    )
    # The SMS provider first fails, quoting the number back as Twilio does, then accepts.
    quote = {"message": f"The 'To' number {PHONE} is unreachable", "code": 30003}
    fake_providers.script(PHONE, Reply(status=503, json=quote))
    client = await make_client(settings)
    try:
        webhook, path = await create_webhook(
            client,
            account,
            {
                "name": "logs",
                "notificationTypes": ["EMAIL", "SMS", "PUSH_NOTIF"],
                "targetChannels": {"email": EMAIL, "sms": PHONE, "push": "prod"},
            },
        )
        request_id = "req-5f1e2d3c4b"
        alert = {**ALERT, "message": f"call the DBA on {PHONE}"}  # alert bodies are not logged either
        resp = await client.post(path, json=alert, headers={"X-Request-Id": request_id})
        assert resp.status == 202
        alert_id = (await resp.json())["alert_id"]
        await run_worker(settings)
    finally:
        await client.close()

    # Our lines and arq's, as a worker and the API print them; not the test SMTP server's own log.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    lines = [x for x in lines if x["logger"] != "mail.log"]
    text = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines)
    access = [x for x in lines if x["logger"] == "monoduty.access"]
    inbound = [x for x in access if x.get("route") == "/{token}"]
    assert len(inbound) == 1
    assert inbound[0] | {"latency_ms": 0} == inbound[0] | {
        "method": "POST",
        "status": 202,
        "request_id": request_id,
        "latency_ms": 0,
    }
    assert any(x.get("route") == "/api/webhooks" and x.get("status") == 201 for x in access)

    worker = [x for x in lines if x.get("alert_id") == alert_id]
    assert any(x["message"].startswith("alert stored") for x in worker)
    deliveries = [x for x in worker if x["message"].startswith("delivery ")]
    outcomes = sorted((x["channel"], x["attempt"], x["outcome"]) for x in deliveries)
    assert outcomes == [
        ("EMAIL", 1, "delivered"),
        ("PUSH_NOTIF", 1, "delivered"),
        ("SMS", 1, "retry"),
        ("SMS", 2, "delivered"),
    ]
    for line in worker:
        assert line["request_id"] == request_id and line["webhook_id"] == webhook["id"]
    for line in deliveries:
        assert isinstance(line["latency_ms"], float)
    targets = {x["channel"]: x["target"] for x in deliveries}
    assert targets == {
        "EMAIL": mask_target(EMAIL),
        "SMS": mask_target(PHONE),
        "PUSH_NOTIF": mask_target("prod"),
    }

    token = path.rsplit("/", 1)[1]
    for secret in (token, account.api_key, TWILIO_TOKEN, NTFY_TOKEN, SMTP_PASSWORD, PHONE, PHONE[1:], EMAIL):
        assert secret not in text
