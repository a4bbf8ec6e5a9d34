"""What the tests of the URL and chat channels (WEBHOOK, SLACK, TEAMS, DISCORD, TELEGRAM, MATRIX,
APPRISE) share: a local server for a platform's API, and a real page through a worker.

- ``serve(app)``: runs an aiohttp app on 127.0.0.1 and yields its base URL.
- ``page_through_worker(settings, pool, kind, key, target)``: an account (a new one unless given)
  makes a webhook paging ``target`` on channel ``kind`` (``key`` its targetChannels key) through
  the API, an alert is posted to it, and a burst worker delivers it (on ``worker_settings`` when
  given); returns the API's answer to the webhook's creation, the alert id and the alert's
  delivery rows.
- ``chat_settings(settings)``: ``settings`` as the chat tests need them: a secret key (action
  links, WEBHOOK secrets), and private targets allowed (every platform here is on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.settings import Settings
from tests.support.factories import ALERT, Account, deliveries, make_client, new_account, path_of, run_worker

SECRET_KEY = "chat-tests-secret-key-0123456789abcdef"


def chat_settings(settings: Settings, **changes: object) -> Settings:
    return settings.with_(**{"secret_key": SECRET_KEY, "allow_private_targets": True, **changes})


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    # The platform's own access log would show its URLs (and the secrets in them): it is not ours.
    await server.start_server(access_log=None)
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@dataclass(frozen=True)
class Paged:
    account: Account
    created: dict[str, Any]  # the API's answer to POST /api/webhooks
    alert_id: str
    deliveries: list[asyncpg.Record]


async def page_through_worker(
    settings: Settings,
    pool: asyncpg.Pool,
    kind: str,
    key: str,
    target: str,
    *,
    alert: dict[str, Any] = ALERT,
    account: Account | None = None,
    worker_settings: Settings | None = None,
) -> Paged:
    account = account or await new_account(pool)
    client = await make_client(settings)
    try:
        body = {"name": f"{kind} hook", "notificationTypes": [kind], "targetChannels": {key: target}}
        resp = await client.post("/api/webhooks", json=body, headers=account.headers)
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        resp = await client.post(path_of(created["webhook"]), json=alert)
        assert resp.status == 202, await resp.text()
        alert_id = (await resp.json())["alert_id"]
    finally:
        await client.close()
    await run_worker(worker_settings or settings)
    rows = list((await deliveries(pool, alert_id)).values())
    return Paged(account, created, alert_id, rows)
