"""The heartbeat routes as a user drives them: /api/webhooks/{id}/heartbeats (shapes, roles, bad
input naming its field) and the ping URL (kinds, its log, who sent it, the same-second rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from api.responses import timestamp
from engine.settings import Settings
from tests.support.clock import ManualClock
from tests.support.factories import Account, assert_error, create, make_client, new_account
from tests.support.heartbeats import SETTINGS, forget_heartbeats, new_heartbeat, ping, ping_path, read
from tests.support.teams import new_team


@pytest.fixture(autouse=True)
async def _forget(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await forget_heartbeats(pool)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(settings: Settings, redis: object, clock: ManualClock) -> AsyncIterator[TestClient]:
    """The app on a clock the test moves, with periods and graces of a second allowed."""
    client = await make_client(settings.with_(**SETTINGS), clock=clock)
    yield client
    await client.close()


def base(heartbeat: dict[str, Any]) -> str:
    return f"/api/webhooks/{heartbeat['webhook_id']}/heartbeats"


async def test_create_read_change_and_delete(app: TestClient, account: Account, clock: ManualClock) -> None:
    webhook = await create(app, account)
    made = await new_heartbeat(app, account, webhook, name="nightly backup", period="1d", grace="30m")
    assert made["ping_url"].startswith("http://monoduty.test/ping/")
    assert len(made["ping_url"].rsplit("/", 1)[1]) >= 32  # its own 192 random bits
    assert {k: made[k] for k in ("name", "period", "period_seconds", "cron", "grace", "grace_seconds")} == {
        "name": "nightly backup",
        "period": "1d",
        "period_seconds": 86400,
        "cron": None,
        "grace": "30m",
        "grace_seconds": 1800,
    }
    assert (made["status"], made["last_ping_at"], made["next_expected_at"], made["ping_count"]) == (
        "new",
        None,
        None,
        0,
    )
    clock.advance(1)
    other = await new_heartbeat(app, account, webhook, name="sync", period="5m", grace="1m")
    assert other["ping_url"] != made["ping_url"]

    listing = await (await app.get(base(made), headers=account.headers)).json()
    assert [h["name"] for h in listing["heartbeats"]] == ["nightly backup", "sync"]
    assert listing["heartbeats"][0]["last_ping"] is None
    detail = await read(app, account, made)
    assert detail["pings"] == [] and detail["last_ping"] is None

    url = f"{base(made)}/{made['id']}"
    changed = await app.patch(
        url,
        json={"name": "backup", "cron": "0 3 * * *", "timeZone": "Europe/Berlin"},
        headers=account.headers,
    )
    assert changed.status == 200, await changed.text()
    heartbeat = (await changed.json())["heartbeat"]
    assert (heartbeat["name"], heartbeat["period"], heartbeat["cron"], heartbeat["time_zone"]) == (
        "backup",
        None,
        "0 3 * * *",
        "Europe/Berlin",
    )
    assert heartbeat["grace"] == "30m"  # left out: kept
    back = await app.patch(url, json={"period": "6h"}, headers=account.headers)
    assert (await back.json())["heartbeat"]["time_zone"] == "UTC"

    resp = await app.delete(url, headers=account.headers)
    assert (resp.status, (await resp.json())["deleted"]) == (200, made["id"])
    resp = await app.get(url, headers=account.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "HEARTBEAT_NOT_FOUND")
    resp = await app.post(ping_path(made))
    assert resp.status == 404
    assert_error(await resp.json(), "HEARTBEAT_NOT_FOUND")


async def test_viewers_read_admins_write_and_others_see_nothing(
    app: TestClient, account: Account, other_account: Account, pool: asyncpg.Pool
) -> None:
    viewer, responder, admin = other_account, await new_account(pool), await new_account(pool)
    team = await new_team(app, account, members={"viewer": viewer, "responder": responder, "admin": admin})
    webhook = await create(
        app, account, {"name": "Team hook", "notificationTypes": ["EMAIL"], "teamId": team["id"]}
    )
    heartbeat = await new_heartbeat(app, account, webhook)
    one = f"{base(heartbeat)}/{heartbeat['id']}"
    writes: list[tuple[str, str, Any]] = [
        ("POST", base(heartbeat), {"name": "x", "period": "2s", "grace": "1s"}),
        ("PATCH", one, {"name": "renamed"}),
        ("POST", f"{one}/pause", None),
        ("POST", f"{one}/resume", None),
        ("DELETE", one, None),
    ]
    for who in (viewer, responder):
        assert (await app.get(base(heartbeat), headers=who.headers)).status == 200
        assert (await app.get(one, headers=who.headers)).status == 200
        for method, url, body in writes:
            resp = await app.request(method, url, json=body, headers=who.headers)
            assert resp.status == 403, (method, url)
            assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    outsider = await new_account(pool)
    for method, url, body in [("GET", base(heartbeat), None), ("GET", one, None), *writes]:
        resp = await app.request(method, url, json=body, headers=outsider.headers)
        assert resp.status == 404, (method, url)
        assert_error(await resp.json(), "WEBHOOK_NOT_FOUND")
    # A heartbeat is found only under its own webhook.
    elsewhere = await create(app, account)
    resp = await app.get(
        f"/api/webhooks/{elsewhere['id']}/heartbeats/{heartbeat['id']}", headers=account.headers
    )
    assert resp.status == 404
    assert_error(await resp.json(), "HEARTBEAT_NOT_FOUND")
    for method, url, body in writes:
        resp = await app.request(method, url, json=body, headers=admin.headers)
        assert resp.status in (200, 201), (method, url, await resp.text())


GOOD = {"name": "backup", "period": "5m", "grace": "10m"}
# (body, how the message starts: the field as the client wrote it)
REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({**GOOD, "period": "30s"}, "period must be at least 1m (MONODUTY_MIN_HEARTBEAT_PERIOD)"),
    ({**GOOD, "period": 300}, 'period must be a duration such as "30s", "5m", "2h" or "1d"'),
    ({**GOOD, "grace": "ten minutes"}, 'grace must be a duration such as "30s", "5m", "2h" or "1d"'),
    ({**GOOD, "grace": "10s"}, "grace must be at least 1m"),
    ({"name": "backup", "period": "5m"}, 'grace is required (such as "10m")'),
    ({"name": "backup", "grace": "5m"}, 'period (such as "5m") or cron (such as "0 3 * * *") is required'),
    ({**GOOD, "cron": "0 3 * * *"}, "give either period or cron, not both"),
    ({"name": "backup", "cron": "every night", "grace": "5m"}, "cron must be five fields"),
    (
        {"name": "backup", "cron": "0 3 31 2 *", "grace": "5m"},
        "cron is not a cron expression that ever fires",
    ),
    ({"name": "backup", "cron": "0 3 * * * *", "grace": "5m"}, "cron must be five fields"),
    (
        {"name": "backup", "cron": "0 3 * * *", "timeZone": "Mars/Olympus", "grace": "5m"},
        "timeZone must be an IANA",
    ),
    ({**GOOD, "timeZone": "Europe/Berlin"}, "timeZone is for a cron heartbeat only"),
    ({**GOOD, "name": ""}, "name must be at least 1 characters"),
    ({**GOOD, "name": 5}, "name must be a string"),
    ({**GOOD, "every": "5m"}, "unknown field: every"),
]


@pytest.mark.parametrize(("body", "starts"), REFUSALS, ids=[r[1] for r in REFUSALS])
async def test_bad_input_is_a_400_naming_the_field(
    client: TestClient, account: Account, body: dict[str, Any], starts: str
) -> None:
    webhook = await create(client, account)
    resp = await client.post(f"/api/webhooks/{webhook['id']}/heartbeats", json=body, headers=account.headers)
    data = await resp.json()
    assert resp.status == 400, data
    assert_error(data, "VALIDATION_ERROR")
    assert data["error"].startswith(starts), data["error"]


async def test_a_change_is_checked_as_a_create_is(client: TestClient, account: Account) -> None:
    webhook = await create(client, account)
    resp = await client.post(f"/api/webhooks/{webhook['id']}/heartbeats", json=GOOD, headers=account.headers)
    url = f"/api/webhooks/{webhook['id']}/heartbeats/{(await resp.json())['heartbeat']['id']}"
    for body, starts in [
        ({"cron": "61 * * * *"}, "cron is not a cron expression"),
        ({"grace": "1s"}, "grace must be at least 1m"),
        ({"timeZone": "Europe/Berlin"}, "timeZone is for a cron heartbeat only"),
        ({"name": None}, "name is required"),
    ]:
        resp = await client.patch(url, json=body, headers=account.headers)
        data = await resp.json()
        assert resp.status == 400 and data["error"].startswith(starts), data


async def test_pings_by_get_or_post_with_their_kind_log_and_sender(
    app: TestClient, account: Account, clock: ManualClock
) -> None:
    heartbeat = await new_heartbeat(app, account, await create(app, account))
    resp = await ping(app, heartbeat, method="GET", headers={"User-Agent": "curl/8.5.0"})
    assert await resp.read() == b'{"success":true}'  # tiny
    clock.advance(1)
    await ping(app, heartbeat, "/start", method="GET")
    clock.advance(1)
    log = "x" * 12_000
    await ping(app, heartbeat, "/fail", data=log.encode(), headers={"User-Agent": "backup.sh"})
    seen = await read(app, account, heartbeat)
    assert [(p["kind"], p["method"]) for p in seen["pings"]] == [
        ("fail", "POST"),
        ("start", "GET"),
        ("success", "GET"),
    ]
    newest = seen["pings"][0]
    assert newest["body"] == log[: 10 * 1024]  # the first 10 KiB kept, the ping still taken
    assert (newest["source_ip"], newest["user_agent"]) == ("127.0.0.1", "backup.sh")
    assert seen["pings"][2]["user_agent"] == "curl/8.5.0"
    assert seen["last_ping"] == {k: v for k, v in newest.items() if k != "body"}
    assert (seen["status"], seen["ping_count"]) == ("down", 3)
    listed = await (await app.get(base(heartbeat), headers=account.headers)).json()
    assert listed["heartbeats"][0]["last_ping"]["kind"] == "fail"


@pytest.mark.parametrize(("proxies", "seen"), [(("127.0.0.1",), "203.0.113.7"), ((), "127.0.0.1")])
async def test_the_source_address_is_the_proxys_word_only_from_a_trusted_proxy(
    settings: Settings, redis: object, account: Account, proxies: tuple[str, ...], seen: str
) -> None:
    client = await make_client(settings.with_(trusted_proxies=proxies, **SETTINGS))
    try:
        heartbeat = await new_heartbeat(client, account, await create(client, account))
        await ping(client, heartbeat, headers={"X-Forwarded-For": "203.0.113.7"})
        assert (await read(client, account, heartbeat))["pings"][0]["source_ip"] == seen
    finally:
        await client.close()


async def test_a_ping_within_the_second_of_the_last_of_its_kind_is_counted_not_stored(
    app: TestClient, account: Account, clock: ManualClock, pool: asyncpg.Pool
) -> None:
    heartbeat = await new_heartbeat(app, account, await create(app, account))
    for _ in range(30):
        await ping(app, heartbeat)
    clock.advance(0.5)
    await ping(app, heartbeat, "/start")  # another kind: stored
    await ping(app, heartbeat, "/start")
    seen = await read(app, account, heartbeat)
    assert [p["kind"] for p in seen["pings"]] == ["start", "success"]
    assert seen["ping_count"] == 32  # every ping counted
    clock.advance(0.6)  # a second after the first success
    await ping(app, heartbeat)
    seen = await read(app, account, heartbeat)
    assert [p["kind"] for p in seen["pings"]] == ["success", "start", "success"]
    assert (seen["ping_count"], seen["started_at"]) == (33, None)
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM heartbeat_pings WHERE heartbeat_id = $1", heartbeat["id"]
        )
    assert stored == 3


async def test_the_last_100_pings_are_kept(app: TestClient, account: Account, clock: ManualClock) -> None:
    heartbeat = await new_heartbeat(app, account, await create(app, account))
    for n in range(105):
        await ping(app, heartbeat, data=f"run {n}".encode())
        clock.advance(1)
    seen = await read(app, account, heartbeat)
    assert len(seen["pings"]) == 100 and seen["ping_count"] == 105
    assert (seen["pings"][0]["body"], seen["pings"][-1]["body"]) == ("run 104", "run 5")


async def test_an_unknown_ping_url_is_a_404(app: TestClient) -> None:
    for path in ("/ping/" + "x" * 32, "/ping/" + "x" * 32 + "/fail"):
        resp = await app.get(path)
        assert resp.status == 404
        assert_error(await resp.json(), "HEARTBEAT_NOT_FOUND")


async def test_paused_it_keeps_its_pings_and_is_checked_again_from_the_resume(
    app: TestClient, account: Account, clock: ManualClock
) -> None:
    heartbeat = await new_heartbeat(app, account, await create(app, account), period="1m", grace="1m")
    await ping(app, heartbeat)
    one = f"{base(heartbeat)}/{heartbeat['id']}"
    paused = await (await app.post(f"{one}/pause", headers=account.headers)).json()
    assert (paused["heartbeat"]["status"], paused["heartbeat"]["down_at"]) == ("paused", None)
    clock.advance(10)
    await ping(app, heartbeat, "/fail")
    seen = await read(app, account, heartbeat)
    assert (seen["status"], len(seen["pings"])) == ("paused", 2)
    clock.advance(600)
    resumed = (await (await app.post(f"{one}/resume", headers=account.headers)).json())["heartbeat"]
    assert resumed["status"] == "up"
    assert resumed["next_expected_at"] > seen["last_ping_at"]
    assert (resumed["next_expected_at"], resumed["down_at"]) == (stamp(clock, 60), stamp(clock, 120))


def stamp(clock: ManualClock, seconds: float) -> str:
    """How the API writes the clock's time ``seconds`` on."""
    return timestamp(clock.now() + timedelta(seconds=seconds))
