"""Every change to a webhook reaches the inbound token cache, whoever calls the engine."""

from __future__ import annotations

import asyncpg
from arq.connections import ArqRedis

from engine import webhooks
from engine.alerts import inbound
from tests.support.factories import Account


async def test_the_engines_writes_forget_the_cached_token(
    pool: asyncpg.Pool, redis: ArqRedis, account: Account
) -> None:
    async with pool.acquire() as conn:
        record = await webhooks.create_webhook(
            conn, account.user, webhooks.WebhookInput(name="cached", notification_types=["EMAIL"]), {"EMAIL"}
        )
    token, webhook_id = record["token"], record["id"]
    assert (await inbound.resolve_token(redis, pool, token)) is not None  # now cached
    async with pool.acquire() as conn:
        paused = webhooks.WebhookInput(status="PAUSED")
        await webhooks.update_webhook(conn, redis, account.user, webhook_id, paused, {"EMAIL"})
    cached = await inbound.resolve_token(redis, pool, token)
    assert cached is not None and cached.status == "PAUSED"
    async with pool.acquire() as conn:
        await webhooks.delete_webhook(conn, redis, account.user.id, webhook_id)
    assert await inbound.resolve_token(redis, pool, token) is None
