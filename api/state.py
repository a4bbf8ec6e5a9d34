"""Typed application state (aiohttp AppKeys), shared by the handlers."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from engine.alerts.inbound import TokenCache
from engine.auth.api_keys import KeyCache
from engine.auth.users import User, UserCache
from engine.channels.registry import Deliverable
from engine.clock import Clock
from engine.observability import response_times
from engine.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
AVAILABLE_TYPES = web.AppKey(
    "available_types", Deliverable
)  # the types, and whether private targets may be given
API_BODY_LIMIT = web.AppKey("api_body_limit", int)
# What "now" is for the engine's time rules (engine.clock; tests hand in one that runs ahead).
CLOCK = web.AppKey("clock", Clock)
# This process's request times, not yet in Redis (api/observability.py records and flushes them).
RESPONSE_TIMES = web.AppKey("response_times", response_times.Recorder)

# This process's caches, emptied by every change in any process (engine.local_cache, api/caches.py).
TOKENS = web.AppKey("tokens", TokenCache)
API_KEYS = web.AppKey("api_keys", KeyCache)
USERS = web.AppKey("users", UserCache)

REQUEST_ID = web.RequestKey("request_id", str)
USER = web.RequestKey("user", User)


def public_url(request: web.Request) -> str:
    """Base of every webhook_url: MONODUTY_PUBLIC_URL, else how this request reached us."""
    configured = request.app[SETTINGS].public_url
    if configured:
        return configured
    return f"{request.scheme}://{request.host}"
