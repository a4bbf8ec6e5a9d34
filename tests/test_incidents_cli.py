"""`monoduty incidents` as a person at a terminal runs it: a real process talking to the real API
with their key; incidents named by number (as pages say them) or id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.escalation import open_incident
from tests.support.factories import WEBHOOK, Account, assert_error, create, new_account
from tests.support.processes import ROOT, monoduty_argv, monoduty_env
from tests.support.teams import add_member, new_team


async def cli(client: TestClient, *args: str, key: str | None) -> tuple[int, str, str]:
    """Run `monoduty incidents ARGS` against the test's API (without blocking the loop serving it)."""
    env = monoduty_env(MONODUTY_API_URL=str(client.make_url("")).rstrip("/"))
    if key is not None:
        env["MONODUTY_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        *monoduty_argv("incidents", *args),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_of(client: TestClient, account: Account, incident_id: object) -> str:
    resp = await client.get(f"/api/incidents/{incident_id}", headers=account.headers)
    return str((await resp.json())["incident"]["status"])


async def test_list_then_acknowledge_and_resolve_by_number(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    webhook = await create(client, account, WEBHOOK)
    incident = await open_incident(pool, webhook, datetime.now(UTC), key="db")
    number = (await (await client.get(f"/api/incidents/{incident}", headers=account.headers)).json())[
        "incident"
    ]["number"]

    code, out, _ = await cli(client, "list", key=account.api_key)
    assert code == 0
    assert any(
        line.startswith(f"#{number} ") and "triggered" in line and "db down" in line
        for line in out.splitlines()
    )

    code, out, _ = await cli(client, "ack", f"#{number}", key=account.api_key)
    assert (code, out.strip()) == (0, f"#{number} db down: acknowledged")
    assert await status_of(client, account, incident) == "acknowledged"
    code, out, _ = await cli(client, "resolve", str(incident), key=account.api_key)  # by id too
    assert (code, out.strip()) == (0, f"#{number} db down: resolved")
    code, out, _ = await cli(client, "list", key=account.api_key)
    assert f"#{number} " not in out  # open ones by default


async def test_what_it_refuses_it_says_and_exits_1(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    code, _, err = await cli(client, "list", key=None)
    assert code == 1 and "set MONODUTY_API_KEY" in err
    code, _, err = await cli(client, "list", key="md_live_not-a-real-key")
    assert code == 1 and "(401)" in err
    code, _, err = await cli(client, "ack", "99999", key=account.api_key)
    assert code == 1 and "no incident #99999" in err
    resp = await client.get("/api/incidents?number=forty-two", headers=account.headers)
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, "VALIDATION_ERROR")
    assert "number" in body["error"]

    # Number 1 in two of a person's teams: they must say which.
    person = await new_account(pool)
    incidents = []
    for name in ("Payments", "Search"):
        team = await new_team(client, account, name=name)
        await add_member(client, account, team["id"], person, "responder")
        webhook = await create(client, account, {**WEBHOOK, "teamId": team["id"]})
        incidents.append((team["id"], await open_incident(pool, webhook, datetime.now(UTC))))
    code, _, err = await cli(client, "ack", "1", key=person.api_key)
    assert code == 1 and "add --team" in err
    assert {await status_of(client, person, i) for _, i in incidents} == {"triggered"}
    team_id = incidents[1][0]
    code, _, err = await cli(client, "ack", "1", "--team", team_id, key=person.api_key)
    assert code == 0, err
    assert [await status_of(client, person, i) for _, i in incidents] == ["triggered", "acknowledged"]
