"""Two requests racing for one webhook alias: the loser gets 409 ALIAS_TAKEN, never a 500."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.factories import Account, create

BLOCKED = """
SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE webhooks SET name%'
"""


async def test_rename_that_loses_a_race_for_an_alias_is_a_conflict(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    first = await create(client, account, {"name": "first hook", "notificationTypes": ["EMAIL"]})
    second = await create(client, account, {"name": "second hook", "notificationTypes": ["EMAIL"]})
    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        # The winner has taken the alias but not committed: the PATCH's check cannot see it yet.
        await holder.execute("UPDATE webhooks SET alias = 'contested' WHERE id = $1", uuid.UUID(first["id"]))
        patch = asyncio.create_task(
            client.patch(
                f"/api/webhooks/{second['id']}", json={"alias": "contested"}, headers=account.headers
            )
        )
        deadline = time.monotonic() + 10
        while not await pool.fetchval(BLOCKED):  # the PATCH waits on the winner's index entry
            assert time.monotonic() < deadline, "the PATCH never reached the alias"
            await asyncio.sleep(0.01)
        await transaction.commit()
    resp = await patch
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["code"] == "ALIAS_TAKEN"
