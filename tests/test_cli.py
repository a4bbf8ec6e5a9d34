"""The `monoduty` command as an operator runs it: real processes, real services."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import DevProcess, monoduty, monoduty_env, wait_for
from tests.support.services import Services, database_named


def http(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_migrate_is_idempotent_and_users_create_prints_a_working_key(services: Services) -> None:
    env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=services.redis_url)
    assert "schema applied" in monoduty("migrate", env=env).stdout
    assert "schema applied" in monoduty("migrate", env=env).stdout

    created = json.loads(monoduty("users", "create", "--email", "Ops@Example.com", "--json", env=env).stdout)
    assert set(created) == {"id", "email", "api_key"}
    assert created["api_key"].startswith("md_live_")

    again = monoduty("users", "create", "--email", "ops@example.com", env=env, check=False)
    assert again.returncode != 0
    assert "already exists" in again.stderr

    bad = monoduty("users", "create", "--email", "not-an-email", env=env, check=False)
    assert bad.returncode != 0 and "email" in bad.stderr


def test_missing_configuration_is_a_clear_error() -> None:
    result = monoduty("worker", env=monoduty_env(), check=False)
    assert result.returncode != 0
    assert "MONODUTY_DATABASE_URL" in result.stderr
    result = monoduty("api", env=monoduty_env(MONODUTY_MAX_ATTEMPTS="many"), check=False)
    assert result.returncode != 0 and "MONODUTY_MAX_ATTEMPTS" in result.stderr


def login_link(dev: DevProcess) -> str:
    """The dashboard sign-in link `monoduty dev` printed."""
    line = next(line for line in dev.output().splitlines() if "sign-in link" in line)
    link = line.split(": ")[-1]
    assert link.startswith(f"{dev.url}/login/mdl_"), line
    return link


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_without_redirect(url: str) -> tuple[int, Any]:
    """POST an empty form; the status and headers of the answer itself (a 303 is not followed)."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    # Not tmp_path: pytest keeps that under a 0700 folder that the embedded PostgreSQL, running
    # as its own system user when we are root, could not reach.
    with tempfile.TemporaryDirectory(prefix="monoduty-dev-") as folder:
        yield Path(folder) / "data"


@pytest.mark.slow  # over 5 s: run with the slow tests
def test_dev_on_embedded_services_delivers_and_keeps_its_data(dev_dir: Path) -> None:
    """The README's run command: nothing configured, embedded PostgreSQL and Redis, data kept."""
    env = monoduty_env()
    dev = DevProcess(dev_dir, env)
    try:
        key = next(line.split(": ")[-1] for line in dev.output().splitlines() if "API key" in line)
        link = login_link(dev)
        status, headers = post_without_redirect(link)
        assert status == 303 and headers["Location"] == "/"
        assert "monoduty_session=" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
        assert post_without_redirect(link)[0] == 400  # once only
        status, created = http(
            "POST",
            f"{dev.url}/api/webhooks",
            {
                "name": "Production Alerts",
                "notificationTypes": ["EMAIL", "SMS"],
                "targetChannels": {"email": "oncall@example.com", "sms": "+14155550123"},
            },
            key,
        )
        assert status == 201, created
        webhook_url = created["webhook"]["webhook_url"]
        assert webhook_url.startswith(dev.url + "/")
        status, queued = http("POST", webhook_url, {"title": "DB down", "severity": "critical"})
        assert status == 202

        def delivered() -> list[dict]:
            out = monoduty("outbox", "--json", env={**env, "MONODUTY_DATA_DIR": str(dev_dir)}).stdout
            return [e for e in json.loads(out) if e["alert_id"] == queued["alert_id"]]

        sent = wait_for(lambda: len(delivered()) == 2 and delivered(), "the outbox", timeout=60)
        assert {e["channel"] for e in sent} == {"EMAIL", "SMS"}
        assert all(e["subject"] == "[CRITICAL] #1 DB down" for e in sent)
        # The email carries its action links, and `monoduty outbox` prints them to click.
        (email,) = [e for e in sent if e["channel"] == "EMAIL"]
        assert email["actions"]["acknowledge"].startswith(f"{dev.url}/a/")
        printed = monoduty("outbox", env={**env, "MONODUTY_DATA_DIR": str(dev_dir)}).stdout
        assert f"    acknowledge: {email['actions']['acknowledge']}" in printed.splitlines()
    finally:
        assert dev.stop() == 0

    again = DevProcess(dev_dir, env)
    try:
        assert "users exist already" in again.output()
        assert post_without_redirect(login_link(again))[0] == 303  # a new link at every start
        status, listing = http("GET", f"{again.url}/api/webhooks", key=key)
        assert status == 200 and listing["total"] == 1
        assert listing["webhooks"][0]["statistics"]["successful_calls"] == 1
    finally:
        assert again.stop() == 0


def test_an_unmigrated_database_gets_a_hint_not_a_traceback(services: Services) -> None:
    env = monoduty_env(MONODUTY_DATABASE_URL=database_named(services.database_url, "postgres"))
    result = monoduty("users", "create", "--email", "early@example.com", env=env, check=False)
    assert result.returncode != 0
    assert "monoduty migrate" in result.stderr and "Traceback" not in result.stderr
    unreachable = monoduty_env(MONODUTY_DATABASE_URL="postgresql://someone:hunter2@127.0.0.1:1/x")
    result = monoduty("users", "create", "--email", "early@example.com", env=unreachable, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
