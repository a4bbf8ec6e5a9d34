"""The in-app inbox as a user sees it: what lands there, the unread count, reading, ownership."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import notifications
from engine.notifications import NotificationKind
from engine.settings import Settings
from tests.support.factories import Account, assert_error, create, run_worker, send_alert
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders, Reply, SmtpServer


async def inbox(client: TestClient, account: Account, query: str = "") -> dict:
    resp = await client.get(f"/api/notifications{query}", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def unread(client: TestClient, account: Account) -> int:
    resp = await client.get("/api/notifications/unread-count", headers=account.headers)
    data = await resp.json()
    assert resp.status == 200 and set(data) == {"success", "unread_count"} and data["success"] is True
    return data["unread_count"]


async def seed(pool: asyncpg.Pool, account: Account, n: int) -> list[uuid.UUID]:
    """n notifications a second apart, oldest first."""
    ids = []
    async with pool.acquire() as conn:
        for i in range(n):
            nid = await notifications.create(conn, account.user.id, NotificationKind.ALERT_RECEIVED, f"n{i}")
            await conn.execute(
                "UPDATE notifications SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
                nid,
                float(n - i),
            )
            ids.append(nid)
    return ids


async def test_an_alert_lands_in_its_owners_inbox_only(
    client: TestClient, account: Account, other_account: Account, settings: Settings
) -> None:
    webhook = await create(client, account)
    path = webhook["webhook_url"].removeprefix("http://monoduty.test")
    resp = await client.post(
        path, json={"title": "DB down", "message": "primary unreachable", "severity": "critical"}
    )
    alert_id = (await resp.json())["alert_id"]
    assert await unread(client, account) == 0  # not before the worker stored the alert
    await run_worker(settings)

    data = await inbox(client, account)
    [item] = data["notifications"]
    assert item["kind"] == "alert_received"
    assert item["title"] == "[CRITICAL] DB down"
    assert "Production Alerts" in item["body"] and "primary unreachable" in item["body"]
    assert (item["alert_id"], item["webhook_id"], item["read"]) == (alert_id, webhook["id"], False)
    assert data["next_cursor"] is None
    resp = await client.get("/api/notifications/unread-count", headers=account.headers)
    assert await resp.json() == {"success": True, "unread_count": 1}

    # another user sees nothing, cannot read it, and marking their own all-read leaves ours alone
    assert (await inbox(client, other_account))["notifications"] == []
    assert await unread(client, other_account) == 0
    resp = await client.post(f"/api/notifications/{item['id']}/read", headers=other_account.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "NOTIFICATION_NOT_FOUND")
    resp = await client.post("/api/notifications/mark-all-read", headers=other_account.headers)
    assert (await resp.json())["updated"] == 0
    assert await unread(client, account) == 1


async def test_test_sends_do_not_notify(client: TestClient, account: Account, settings: Settings) -> None:
    webhook = await create(client, account)
    resp = await client.post(f"/api/webhooks/{webhook['id']}/test", headers=account.headers)
    assert resp.status == 202
    await run_worker(settings)
    assert (await inbox(client, account))["notifications"] == []


async def test_a_permanent_failure_notifies_once(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    fake_providers.script(
        "+14155550123", Reply(400, json={"code": 21211, "message": "The 'To' number is not valid"})
    )
    fake_providers.script("prod-alerts", Reply(503))  # transient, then delivered: no notification
    _, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)

    items = (await inbox(live, account))["notifications"]
    by_kind = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)
    assert sorted(by_kind) == ["alert_received", "delivery_failed"]
    [failed] = by_kind["delivery_failed"]
    assert failed["title"] == "Delivery failed: DB down"
    assert failed["body"].startswith("SMS to +14155550123 failed after 1 attempt(s) on Production Alerts")
    assert "not valid" in failed["body"]
    assert failed["alert_id"] == alert_id
    assert await unread(live, account) == 2


async def test_read_and_mark_all_read_move_the_numbers(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    ids = await seed(pool, account, 3)
    assert await unread(client, account) == 3

    resp = await client.post(f"/api/notifications/{ids[0]}/read", headers=account.headers)
    assert resp.status == 200
    first = (await resp.json())["notification"]
    assert first["read"] is True and first["read_at"]
    assert await unread(client, account) == 2
    again = await client.post(f"/api/notifications/{ids[0]}/read", headers=account.headers)
    assert (await again.json())["notification"]["read_at"] == first[
        "read_at"
    ]  # reading twice changes nothing
    assert await unread(client, account) == 2

    listed = (await inbox(client, account, "?unread=true"))["notifications"]
    assert [n["id"] for n in listed] == [str(ids[2]), str(ids[1])]

    resp = await client.post("/api/notifications/mark-all-read", headers=account.headers)
    assert await resp.json() == {"success": True, "updated": 2}
    assert await unread(client, account) == 0
    assert (await inbox(client, account, "?unread=true"))["notifications"] == []
    assert len((await inbox(client, account))["notifications"]) == 3  # read ones stay in the inbox
    resp = await client.post("/api/notifications/mark-all-read", headers=account.headers)
    assert (await resp.json())["updated"] == 0


async def test_pages_are_newest_first_and_complete(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    ids = await seed(pool, account, 5)
    seen, query = [], "?limit=2"
    while True:
        data = await inbox(client, account, query)
        assert len(data["notifications"]) <= 2
        seen += [n["id"] for n in data["notifications"]]
        if data["next_cursor"] is None:
            break
        query = f"?limit=2&cursor={data['next_cursor']}"
    assert seen == [str(i) for i in reversed(ids)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?unread=maybe", "unread"),
        ("?cursor=not-a-cursor", "cursor"),
    ],
)
async def test_bad_list_parameters_are_400(
    client: TestClient, account: Account, query: str, field: str
) -> None:
    resp = await client.get(f"/api/notifications{query}", headers=account.headers)
    assert resp.status == 400
    data = await resp.json()
    assert_error(data, "VALIDATION_ERROR")
    assert field in data["error"]


async def test_unknown_ids_are_404_and_auth_is_required(client: TestClient, account: Account) -> None:
    for raw in (str(uuid.uuid4()), "not-a-uuid"):
        resp = await client.post(f"/api/notifications/{raw}/read", headers=account.headers)
        assert resp.status == 404
    for method, path in [
        ("GET", "/api/notifications"),
        ("GET", "/api/notifications/unread-count"),
        ("POST", "/api/notifications/mark-all-read"),
        ("POST", f"/api/notifications/{uuid.uuid4()}/read"),
    ]:
        resp = await client.request(method, path)
        assert resp.status == 401
        assert_error(await resp.json(), "UNAUTHORIZED")


async def test_pausing_a_webhook_notifies_on_the_change_only(client: TestClient, account: Account) -> None:
    webhook = await create(client, account)

    async def set_status(status: str) -> None:
        resp = await client.patch(
            f"/api/webhooks/{webhook['id']}", json={"status": status}, headers=account.headers
        )
        assert resp.status == 200

    for status in ("PAUSED", "PAUSED", "ACTIVE", "PAUSED"):
        await set_status(status)
    items = (await inbox(client, account))["notifications"]
    assert [n["kind"] for n in items] == ["webhook_paused", "webhook_paused"]
    assert items[0]["title"] == "Webhook paused: Production Alerts"
    assert items[0]["webhook_id"] == webhook["id"]


async def test_a_rate_limit_burst_notifies_once(
    client: TestClient, account: Account, redis: ArqRedis, pool: asyncpg.Pool
) -> None:
    webhook = await create(client, account)

    def hit(webhook_id: str = webhook["id"], window: int = 60):  # type: ignore[no-untyped-def]
        return notifications.notify_once_per_burst(
            redis,
            pool,
            account.user.id,
            webhook_id,
            NotificationKind.RATE_LIMITED,
            "Rate limit hit: Production Alerts",
            "Alerts over 120/minute were refused with 429.",
            window,
        )

    assert sum(await asyncio.gather(*[hit() for _ in range(20)])) == 1
    other = await create(client, account, {"name": "Staging", "notificationTypes": ["EMAIL"]})
    assert await hit(other["id"]) is True  # a burst on another webhook is its own
    items = (await inbox(client, account))["notifications"]
    assert [n["kind"] for n in items] == ["rate_limited", "rate_limited"]
    assert {n["webhook_id"] for n in items} == {webhook["id"], other["id"]}

    # once the window has passed, the next burst notifies again
    assert await hit(other["id"], 1) is False
    key = f"{notifications.BURST_PREFIX}{account.user.id}:{webhook['id']}:rate_limited"
    await redis.expire(key, 1)

    async def expired() -> bool:
        return not await redis.exists(key)

    await wait_until(expired, "the burst key to expire", timeout=5)
    assert await hit() is True
    assert await unread(client, account) == 3


async def test_unread_count_is_an_index_probe_not_a_scan(pool: asyncpg.Pool, account: Account) -> None:
    """With 100k notifications of 100 other users, counting ours reads the partial index only."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()  # rolled back: the session database stays small
        await transaction.start()
        try:
            await conn.execute(
                "INSERT INTO users (id, email) SELECT gen_random_uuid(), 'bulk' || n || '@example.com' "
                "FROM generate_series(1, 100) n"
            )
            await conn.execute(
                """
                INSERT INTO notifications (id, user_id, kind, title, read_at)
                SELECT gen_random_uuid(), u.id, 'alert_received', 'bulk',
                    CASE WHEN n % 10 = 0 THEN NULL ELSE now() END
                FROM (SELECT id FROM users WHERE email LIKE 'bulk%') u, generate_series(1, 1000) n
                ORDER BY u.id
                """
            )
            for i in range(30):
                await notifications.create(
                    conn, account.user.id, NotificationKind.ALERT_RECEIVED, f"ours {i}"
                )
            await conn.execute("ANALYZE notifications")
            plan = json.loads(
                await conn.fetchval(f"EXPLAIN (FORMAT JSON) {notifications.UNREAD_COUNT}", account.user.id)
            )
            assert await notifications.unread_count(conn, account.user.id) == 30
        finally:
            await transaction.rollback()

    nodes = []

    def walk(node: dict) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    kinds = {n["Node Type"] for n in nodes}
    assert "Seq Scan" not in kinds, kinds
    scans = [n for n in nodes if n["Node Type"] in ("Index Only Scan", "Bitmap Index Scan", "Index Scan")]
    assert scans and all(n["Index Name"] == "notifications_unread_idx" for n in scans), nodes
