"""Heartbeats on the dashboard's webhook page over HTTP: the create form (the engine's error at
its field, then saved), each heartbeat's status in words, its ping URL and last pings, pause and
resume; a viewer of the team sees them but is refused every change."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.support.dashboard import signed_in
from tests.support.factories import Account, create, new_account
from tests.support.heartbeats import forget_heartbeats, new_heartbeat, ping, read
from tests.support.html_text import field_error, text_of
from tests.support.teams import new_team


@pytest.fixture(autouse=True)
async def _forget(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await forget_heartbeats(pool)


async def listed(client: TestClient, account: Account, hook: dict[str, str]) -> list[dict[str, str]]:
    resp = await client.get(f"/api/webhooks/{hook['id']}/heartbeats", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["heartbeats"])


async def test_an_admin_adds_a_heartbeat_after_a_field_error_and_pauses_and_resumes_it(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account, {"name": "Backups", "notificationTypes": ["EMAIL"]})
    csrf = await signed_in(client, pool, account)
    page = await (await client.get(f"/webhooks/{hook['id']}")).text()
    assert "No heartbeat yet." in text_of(page) and 'id="heartbeat-form"' in page

    base = f"/webhooks/{hook['id']}/heartbeats"
    form = {
        "csrf_token": csrf,
        "heartbeat_name": "Nightly <dump>",
        "period": "",
        "cron": "61 3 * * *",
        "grace": "10m",
    }
    resp = await client.post(base, data=form)
    assert resp.status == 400
    page = await resp.text()
    assert field_error(page, "cron").startswith("Cron"), page
    assert 'value="Nightly &lt;dump&gt;"' in page  # what was typed is kept, escaped
    assert await listed(client, account, hook) == []

    resp = await client.post(
        base, data={**form, "cron": "0 3 * * *", "time_zone": "Europe/Berlin"}, allow_redirects=False
    )
    assert resp.status == 303
    [made] = await listed(client, account, hook)
    assert (
        made["name"] == "Nightly <dump>"
        and made["cron"] == "0 3 * * *"
        and made["time_zone"] == "Europe/Berlin"
    )
    assert made["grace_seconds"] == 600
    page = await (await client.get(resp.headers["Location"])).text()
    words = text_of(page)
    assert "Heartbeat added" in words and "New: waiting for its first ping" in words
    assert f'value="{made["ping_url"]}"' in page and "Copy ping URL" in words
    assert "cron “0 3 * * *” (Europe/Berlin), grace 10m" in words and "Last ping never" in words

    await ping(client, made, headers={"User-Agent": "curl/8.5.0"})
    page = await (await client.get(f"/webhooks/{hook['id']}")).text()
    words = text_of(page)
    assert "beat-up" in page and " Up " in words and "Last pings (1)" in words
    assert "curl/8.5.0" in words and "success" in words

    one = f"{base}/{made['id']}"
    assert (await client.post(f"{one}/pause", allow_redirects=False)).status == 403  # no token
    resp = await client.post(f"{one}/pause", data={"csrf_token": csrf})
    assert "Paused: not checked" in text_of(await resp.text())
    assert (await read(client, account, made))["status"] == "paused"
    resp = await client.post(f"{one}/resume", data={"csrf_token": csrf})
    assert "Heartbeat resumed" in text_of(await resp.text())
    assert (await read(client, account, made))["status"] == "up"


async def test_a_missing_schedule_is_shown_at_the_period_field(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account)
    csrf = await signed_in(client, pool, account)
    form = {"csrf_token": csrf, "heartbeat_name": "Hourly", "period": "", "cron": "", "grace": "5m"}
    resp = await client.post(f"/webhooks/{hook['id']}/heartbeats", data=form)
    assert resp.status == 400
    assert "cron" in field_error(await resp.text(), "period")
    assert await listed(client, account, hook) == []


async def test_a_viewer_sees_heartbeats_but_cannot_add_pause_or_resume_them(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    viewer = await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer})
    hook = await create(
        client, account, {"name": "Jobs", "notificationTypes": ["EMAIL"], "teamId": team["id"]}
    )
    beat = await new_heartbeat(client, account, hook, period="1h", grace="5m")
    csrf = await signed_in(client, pool, viewer)
    page = await (await client.get(f"/webhooks/{hook['id']}")).text()
    assert "nightly backup" in page and 'id="heartbeat-form"' not in page and "/pause" not in page

    base = f"/webhooks/{hook['id']}/heartbeats"
    resp = await client.post(
        base, data={"csrf_token": csrf, "heartbeat_name": "x", "period": "1h", "grace": "5m"}
    )
    assert resp.status == 403 and len(await listed(client, account, hook)) == 1
    assert (await client.post(f"{base}/{beat['id']}/pause", data={"csrf_token": csrf})).status == 403
    assert (await read(client, account, beat))["status"] == "new"
