"""The dashboard's webhook pages over HTTP: edit (the engine's errors at their fields), pause and
resume, a test send, delete after a page that names it, and each sender's configuration."""

from __future__ import annotations

import re

import asyncpg
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.dashboard import signed_in
from tests.support.factories import Account, create, new_account, path_of, run_worker
from tests.support.teams import new_team


async def test_the_edit_form_shows_the_engines_error_at_its_field_and_then_saves(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account)
    csrf = await signed_in(client, pool, account)
    form_page = await (await client.get(f"/webhooks/{hook['id']}/edit")).text()
    assert 'value="Production Alerts"' in form_page and 'value="admin@company.com"' in form_page
    form = [
        ("csrf_token", csrf),
        ("name", "Production <b>"),
        ("channel", "EMAIL"),
        ("channel", "SMS"),
        ("target_email", "oncall@example.com"),
        ("target_sms", "555-not-a-number"),
    ]
    resp = await client.post(f"/webhooks/{hook['id']}", data=form)
    assert resp.status == 400
    page = await resp.text()
    error = re.search(r'<p class="field-error" id="target_sms-error">([^<]+)</p>', page)
    assert error and error.group(1).startswith("SMS targets"), page
    assert 'value="Production &lt;b&gt;"' in page  # what was typed is kept, escaped
    before = await (await client.get(f"/api/webhooks/{hook['id']}", headers=account.headers)).json()
    assert before["webhook"]["name"] == "Production Alerts"  # nothing changed

    fixed = [(k, "+14155550199" if k == "target_sms" else v) for k, v in form]
    resp = await client.post(f"/webhooks/{hook['id']}", data=fixed, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/webhooks/{hook['id']}?done=saved"
    after = (await (await client.get(f"/api/webhooks/{hook['id']}", headers=account.headers)).json())[
        "webhook"
    ]
    assert after["name"] == "Production <b>" and after["notification_types"] == ["EMAIL", "SMS"]
    assert after["target_channels"] == {"email": ["oncall@example.com"], "sms": ["+14155550199"]}
    assert after["webhook_url"] == hook["webhook_url"]  # its URL stays


async def test_pause_resume_test_and_delete(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    hook = await create(client, account, {"name": "Nightly jobs", "notificationTypes": ["EMAIL"]})
    csrf = await signed_in(client, pool, account)
    base = f"/webhooks/{hook['id']}"
    assert (await client.post(f"{base}/pause", allow_redirects=False)).status == 403  # no token
    resp = await client.post(f"{base}/pause", data={"csrf_token": csrf})
    page = await resp.text()
    assert "Paused: alerts sent to its URL are refused" in page and ">Resume</button>" in page
    assert (await client.post(path_of(hook), json={"title": "x"})).status == 409
    await client.post(f"{base}/resume", data={"csrf_token": csrf})
    assert (await client.post(path_of(hook), json={"title": "x"})).status == 202

    resp = await client.post(f"{base}/test", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303
    await run_worker(settings)
    page = await (await client.get(base)).text()
    assert "Email to" in page and 'class="delivery delivery-delivered"' in page

    confirm = await (await client.get(f"{base}/delete")).text()
    assert "Delete the webhook “Nightly jobs”?" in confirm
    assert await (await client.get(f"/api/webhooks/{hook['id']}", headers=account.headers)).json()
    resp = await client.post(f"{base}/delete", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/webhooks?deleted=1"
    assert (await client.get(base)).status == 404
    assert (await client.post(path_of(hook), json={"title": "x"})).status == 404


async def test_only_an_admin_edits_pauses_or_deletes(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    responder = await new_account(pool)
    team = await new_team(client, account, "Web", {"responder": responder})
    hook = await create(
        client, account, {"name": "Web", "notificationTypes": ["EMAIL"], "teamId": team["id"]}
    )
    csrf = await signed_in(client, pool, responder)
    page = await (await client.get(f"/webhooks/{hook['id']}")).text()
    assert "Send a test alert" in page and "/edit" not in page and "Delete…" not in page
    assert (await client.get(f"/webhooks/{hook['id']}/edit")).status == 403
    for action in ("pause", "delete"):
        resp = await client.post(f"/webhooks/{hook['id']}/{action}", data={"csrf_token": csrf})
        assert resp.status == 403, action
    after = (await (await client.get(f"/api/webhooks/{hook['id']}", headers=account.headers)).json())[
        "webhook"
    ]
    assert after["status"] == "ACTIVE"


async def test_each_sender_gets_its_configuration(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account)
    token = hook["webhook_url"].rsplit("/", 1)[1]
    await signed_in(client, pool, account)
    page = await (await client.get(f"/webhooks/{hook['id']}")).text()
    url = hook["webhook_url"]
    for expected in (
        f"webhook_configs:\n      - url: {url}\n",  # Alertmanager
        f"type: webhook\n        settings:\n          url: {url}\n",  # Grafana
        f"curl -X POST {url}",
        f"url: {url}/v2/enqueue",  # PagerDuty Events v2 in Alertmanager or Grafana
        "api_url: http://monoduty.test/\n",  # Opsgenie
        f"api_key: {token}\n",
        "http://monoduty.test/v2/alerts",
    ):
        assert expected in page, expected
    listing = await client.get("/webhooks", headers={"HX-Request": "true", "HX-Target": "webhook-list"})
    fragment = await listing.text()
    assert "<html" not in fragment and f'href="/webhooks/{hook["id"]}"' in fragment  # a live refresh
    for button in ("Alertmanager", "Grafana", "curl", "PagerDuty", "Opsgenie"):
        assert re.search(rf'<button type="button" data-copy="config-\w+">Copy {button}', page), button


async def test_another_teams_webhook_is_not_found_for_any_action(
    client: TestClient, pool: asyncpg.Pool, account: Account, other_account: Account
) -> None:
    theirs = await create(client, other_account, {"name": "Theirs", "notificationTypes": ["EMAIL"]})
    csrf = await signed_in(client, pool, account)
    base = f"/webhooks/{theirs['id']}"
    for path in (base, f"{base}/edit", f"{base}/delete"):
        assert (await client.get(path)).status == 404, path
    form = {"csrf_token": csrf, "name": "Mine now", "channel": "EMAIL"}
    for path in (base, f"{base}/pause", f"{base}/resume", f"{base}/test", f"{base}/delete"):
        assert (await client.post(path, data=form)).status == 404, path
    after = (await (await client.get(f"/api/webhooks/{theirs['id']}", headers=other_account.headers)).json())[
        "webhook"
    ]
    assert after["name"] == "Theirs" and after["status"] == "ACTIVE"
