"""Limits and leaks: nesting and sizes are 400s in the seed's format, and no secret reaches a log line."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from engine import limits
from tests.support.factories import FULL, Account, assert_error
from tests.support.processes import ApiProcess
from tests.support.services import Services


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**FULL, "targetChannels": nested(limits.MAX_DEPTH + 1)}, "TOO_DEEP"),
        ({**FULL, "description": "x" * (limits.MAX_STRING + 1)}, "VALIDATION_ERROR"),
        ({**FULL, "k" * (limits.MAX_KEY + 1): 1}, "VALIDATION_ERROR"),
        ({**FULL, "notificationTypes": ["EMAIL"] * (limits.MAX_ITEMS + 1)}, "VALIDATION_ERROR"),
    ],
)
async def test_unreasonable_json_is_a_400(
    client: TestClient, account: Account, body: object, code: str
) -> None:
    resp = await client.post("/api/webhooks", json=body, headers=account.headers)
    assert resp.status == 400
    assert_error(await resp.json(), code)


async def test_pathological_nesting_is_a_400_not_a_crash(client: TestClient, account: Account) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    resp = await client.post(
        "/api/webhooks", data=body, headers={**account.headers, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert_error(await resp.json(), "TOO_DEEP")


async def test_no_secret_in_any_log_line_or_error(services: Services, tmp_path: Path) -> None:
    """Drive a server at DEBUG through every kind of secret, then grep its whole log for them."""
    server = ApiProcess(
        services,
        tmp_path / "api.log",
        MONODUTY_LOG_LEVEL="DEBUG",
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_ALLOW_SIGNUP="on",
        MONODUTY_SMTP_HOST="127.0.0.1",  # EMAIL configured; no worker runs, nothing is sent
    )
    password = "a password nobody should ever see"
    signing_secret = "a signing secret nobody should see"
    answers: list[str] = []
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:

            async def call(method: str, path: str, **kwargs: object) -> dict:
                async with web.request(method, server.url + path, **kwargs) as resp:  # type: ignore[arg-type]
                    text = await resp.text()
                    answers.append(text)
                    return json.loads(text)

            email = "leak-check@example.com"
            registered = await call("POST", "/api/auth/register", json={"email": email, "password": password})
            await call("POST", "/api/auth/login", json={"email": email, "password": password + "x"})
            logged_in = await call("POST", "/api/auth/login", json={"email": email, "password": password})
            csrf = {"X-CSRF-Token": logged_in["csrf_token"]}
            created = await call("POST", "/api/api-keys", json={"name": "leak"}, headers=csrf)
            key = created["api_key"]["key"]
            answers.pop()  # the one answer that shows the key, once, on purpose
            bearer = {"Authorization": f"Bearer {key}"}
            webhook = await call(
                "POST",
                "/api/webhooks",
                json={"name": "Leak check", "notificationTypes": ["EMAIL"], "signingSecret": signing_secret},
                headers=bearer,
            )
            token = webhook["webhook"]["webhook_url"].rsplit("/", 1)[1]
            answers.pop()  # shows the webhook_url, the token's home
            await call("POST", f"/{token}", json={"title": "unsigned"})
            await call("POST", f"/{token}", data=b"{not json", headers={"X-Hub-Signature-256": "sha256=00"})
            await call("GET", "/api/webhooks", headers={"Authorization": f"Bearer {key}x"})
            await call("PATCH", "/api/auth/me", json={"email": password}, headers=csrf)
            await call(
                "POST",
                "/api/auth/password",
                json={"currentPassword": password, "newPassword": "x"},
                headers=csrf,
            )
            await call("DELETE", f"/api/api-keys/{created['api_key']['id']}", headers=csrf)
            await call("GET", "/api/webhooks", headers=bearer)
    finally:
        server.stop()
    log = server.output()
    assert "login refused" in log and "bad signature" in log  # the refusals were logged...
    for secret in (password, key, key[len("md_live_") :], token, signing_secret, csrf["X-CSRF-Token"]):
        assert secret not in log
    for secret in (password, key, token, signing_secret):
        assert not [answer for answer in answers if secret in answer]
    assert len(answers) == 10 and registered["success"]


async def test_webhook_list_pages(client: TestClient, account: Account) -> None:
    for name in ("First", "Second", "Third"):
        await client.post("/api/webhooks", json={**FULL, "name": name}, headers=account.headers)
    page = await (await client.get("/api/webhooks?limit=2&offset=1", headers=account.headers)).json()
    assert [w["name"] for w in page["webhooks"]] == ["Second", "Third"] and page["total"] == 3
    assert (await client.get("/api/webhooks?limit=101", headers=account.headers)).status == 400
