"""`monoduty users create` with and without a password, as an operator scripts it."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient

from tests.support.processes import monoduty, monoduty_env
from tests.support.services import Services


async def test_users_create_with_password_can_log_in(services: Services, client: TestClient) -> None:
    env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=services.redis_url)
    made = monoduty(
        "users",
        "create",
        "--email",
        "web@example.com",
        "--password",
        "a good long password",
        "--json",
        env=env,
    )
    created = json.loads(made.stdout)
    assert created["api_key"].startswith("md_live_")
    resp = await client.post(
        "/api/auth/login", json={"email": "web@example.com", "password": "a good long password"}
    )
    assert resp.status == 200

    # no --password and no terminal (a script): a key-only user, no prompt, no hang
    scripted = json.loads(monoduty("users", "create", "--email", "bot@example.com", "--json", env=env).stdout)
    assert scripted["api_key"].startswith("md_live_")
    resp = await client.post("/api/auth/login", json={"email": "bot@example.com", "password": ""})
    assert resp.status == 401

    short = monoduty(
        "users", "create", "--email", "short@example.com", "--password", "short", env=env, check=False
    )
    assert short.returncode != 0 and "password" in short.stderr and "short" not in short.stderr.split(":")[-1]


def test_users_create_with_a_bad_email_says_what_is_wrong(services: Services) -> None:
    env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=services.redis_url)
    made = monoduty("users", "create", "--email", "not-an-address", env=env, check=False)
    assert made.returncode == 1
    assert made.stderr.strip() == "monoduty: email must be an email address like alice@example.com"
