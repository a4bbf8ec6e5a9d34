"""Factories the tests share: accounts, the app on a real socket, webhooks, alerts, signed requests.

- ``new_account(pool)`` → ``Account`` (a user and an API key; ``.headers`` to authenticate).
- ``make_client(settings, clock=...)``: the real app behind a real HTTP client;
  ``run_worker(settings)``: a real arq worker in burst mode until the queue is empty.
- ``create(client, account, body)``: a webhook through the API (``FULL``: one on every channel);
  ``path_of(webhook)``: its inbound path; ``send_alert``: a webhook and one alert to it.
- ``assert_error(data, code)``: an answer in the seed's error format with that code.
- ``standard(...)``, ``github(...)``, ``signed_webhook(...)``: Standard Webhooks / GitHub signatures.
- ``outbox(pool, alert_id)``: what the dev outbox holds for an alert.
- ``counts(...)``: a webhook's statistics as the API shows them; ``statistics(...)`` reads them;
  ``deliveries(pool, alert_id)``: an alert's delivery rows by channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from unittest.mock import ANY

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from engine.auth.api_keys import create_api_key
from engine.auth.users import User, create_user
from engine.clock import SYSTEM, Clock
from engine.settings import Settings
from workers.worker import build_worker


async def make_client(settings: Settings, *, clock: Clock = SYSTEM) -> TestClient:
    client = TestClient(TestServer(create_app(settings, clock=clock)))
    await client.start_server()
    return client


def counts(
    total: int, successful: int, failed: int, *, pending: int = 0, incidents_open: object = ANY
) -> dict[str, object]:
    """A webhook's statistics as the API shows them (``incidents_open``: any count unless given)."""
    return {
        "total_calls": total,
        "successful_calls": successful,
        "failed_calls": failed,
        "pending_calls": pending,
        "incidents_open": incidents_open,
    }


@dataclass(frozen=True)
class Account:
    user: User
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def new_account(pool: asyncpg.Pool, *, phone: str | None = "+14155550100") -> Account:
    async with pool.acquire() as conn:
        user = await create_user(conn, f"user-{uuid.uuid4().hex[:10]}@example.com", phone=phone)
        key, _ = await create_api_key(conn, user.id, "test")
    return Account(user, key)


async def run_worker(settings: Settings, *, clock: Clock = SYSTEM) -> None:
    """Run a real arq worker in burst mode until the queue (retries included) is empty."""
    worker = build_worker(settings, burst=True, clock=clock)
    try:
        await worker.main()
    finally:
        await worker.close()


FULL = {
    "name": "Production Alerts",
    "description": "Critical production system alerts",
    "notificationTypes": ["EMAIL", "SMS", "PUSH_NOTIF", "CALL"],
    "targetChannels": {
        "email": "admin@company.com",
        "sms": "+14155550123",
        "push": "prod-alerts",
        "call": ["+14155550124", "+14155550125"],
    },
}


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def create(client: TestClient, account: Account, body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = await client.post("/api/webhooks", json=body or FULL, headers=account.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["webhook"]


def assert_error(data: dict[str, Any], code: str) -> None:
    assert data["success"] is False
    assert data["code"] == code
    assert isinstance(data["error"], str) and data["error"]
    assert TIMESTAMP.match(data["timestamp"]), data["timestamp"]


def path_of(webhook: dict) -> str:
    return webhook["webhook_url"].removeprefix("http://monoduty.test")


WEBHOOK = {
    "name": "Production Alerts",
    "notificationTypes": ["EMAIL", "SMS", "PUSH_NOTIF", "CALL"],
    "targetChannels": {
        "email": "oncall@example.com",
        "sms": "+14155550123",
        "push": "prod-alerts",
        "call": "+14155550124",
    },
}


ALERT = {"title": "DB down", "message": "primary unreachable", "severity": "critical"}


async def send_alert(client: TestClient, account: Account, webhook_body: dict = WEBHOOK) -> tuple[dict, str]:
    resp = await client.post("/api/webhooks", json=webhook_body, headers=account.headers)
    assert resp.status == 201, await resp.text()
    webhook = (await resp.json())["webhook"]
    resp = await client.post(webhook["webhook_url"].removeprefix("http://monoduty.test"), json=ALERT)
    assert resp.status == 202
    return webhook, (await resp.json())["alert_id"]


KEY = secrets.token_bytes(24)


WHSEC = "whsec_" + base64.b64encode(KEY).decode()


GITHUB_SECRET = "a github webhook secret"


BODY = json.dumps({"title": "DB down", "severity": "critical"}).encode()


def standard(
    body: bytes, key: bytes = KEY, *, msg_id: str | None = None, at: int | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = str(at if at is not None else int(time.time()))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
        "Content-Type": "application/json",
    }


def github(body: bytes, secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


async def signed_webhook(client: TestClient, account: Account, secret: str = WHSEC) -> dict[str, Any]:
    webhook = await create(client, account, {**FULL, "signingSecret": secret})
    assert webhook["signed"] is True
    assert secret not in json.dumps(webhook)
    return webhook


async def outbox(pool: asyncpg.Pool, alert_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT channel, target, subject, body FROM outbox WHERE alert_id = $1 ORDER BY channel, target",
            alert_id,
        )


async def statistics(client: TestClient, account: Account, webhook: dict) -> dict:
    """A webhook's statistics, read through the API."""
    resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    return (await resp.json())["webhook"]["statistics"]


async def deliveries(pool: asyncpg.Pool, alert_id: str) -> dict[str, asyncpg.Record]:
    """An alert's delivery rows by channel."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM deliveries WHERE alert_id = $1", uuid.UUID(alert_id))
    return {r["channel"]: r for r in rows}
