"""This process's caches of tokens, API keys and users (engine.local_cache), and their listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from api.state import API_KEYS, REDIS, TOKENS, USERS
from engine import local_cache
from engine.alerts import inbound
from engine.auth import api_keys, users


def setup(app: web.Application) -> None:
    """Add the caches and their listener; call after the app's Redis is in its cleanup_ctx."""
    app[TOKENS] = inbound.token_cache()
    app[API_KEYS] = api_keys.key_cache()
    app[USERS] = users.user_cache()
    app.cleanup_ctx.append(_listening)


async def _listening(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        local_cache.listen(app[REDIS], [app[TOKENS], app[API_KEYS], app[USERS]]), name="cache invalidation"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
