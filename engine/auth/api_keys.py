"""API keys: made (the secret shown once), looked up on every request, listed, revoked.

A key reads ``md_live_<43 url-safe characters>``: the fixed prefix lets secret scanners spot a
leaked key, and the first characters (``prefix``) are kept in clear so a user can tell keys
apart. Only a SHA-256 of the whole key is stored; lookup is an index probe on that hash, so no
comparison of secrets happens in Python and there is nothing to time.

Each API process keeps the keys it has seen lately (``key_cache``, engine.local_cache) for
``LOCAL_SECONDS``, keyed by the key's hash. Revoking a key, or changing its owner's profile, drops
it from every process's cache through Redis pub/sub: the next request with it, to any process, is
looked up again (and a revoked key refused) within milliseconds.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import asyncpg
from redis.asyncio import Redis

from engine import db, local_cache, validate
from engine.auth.users import User, user_tag
from engine.errors import NotFound, ValidationError
from engine.validate import Unset

KEY_PREFIX = "md_live_"
_SHOWN_CHARS = len(KEY_PREFIX) + 6

MAX_KEYS = 100  # live keys per user; also the page size of the list
LOCAL_SECONDS = 10.0  # how long a process trusts a key it has looked up (changes drop it sooner)

SELECT_ALL = """
SELECT id, name, prefix, created_at, last_used_at FROM api_keys
WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id LIMIT $2 OFFSET $3
"""
COUNT_LIVE = "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL"
INSERT_API_KEY = """
INSERT INTO api_keys (id, user_id, name, prefix, secret_hash) VALUES ($1, $2, $3, $4, $5)
RETURNING id, name, prefix, created_at, last_used_at
"""

# last_used_at is written at most once a minute per key: reads must not turn into writes.
AUTHENTICATE_KEY = """
WITH hit AS (
    SELECT id, user_id, last_used_at FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL
), touch AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM hit)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT u.id, u.email, u.name, u.phone, u.push_topic, u.time_zone, hit.id AS api_key_id
FROM hit JOIN users u ON u.id = hit.user_id
"""
REVOKE = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id
"""


# A key's hash (hex) → its owner and the key's id.
KeyCache = local_cache.LocalCache[tuple[User, uuid.UUID]]


def key_cache() -> KeyCache:
    return local_cache.LocalCache("API keys", LOCAL_SECONDS)


def key_tag(key_id: uuid.UUID) -> str:
    return f"api-key:{key_id}"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_api_key(conn: db.Connection, user_id: uuid.UUID, name: str) -> tuple[str, dict[str, Any]]:
    """Make a key for the user. The secret is returned here once and never again."""
    key = new_api_key()
    record = await conn.fetchrow(
        INSERT_API_KEY, uuid.uuid4(), user_id, name, key[:_SHOWN_CHARS], hash_key(key)
    )
    assert record is not None
    return key, dict(record)


def well_formed(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and len(key) <= 200 and key.isascii()


async def authenticate_key(conn: db.Connection, key: str) -> tuple[User, uuid.UUID] | None:
    """The user owning a live key and the key's id, or None."""
    if not well_formed(key):
        return None
    record = await conn.fetchrow(AUTHENTICATE_KEY, hash_key(key))
    if record is None:
        return None
    return User.from_record(record), record["api_key_id"]


def remember(cache: KeyCache, key: str, found: tuple[User, uuid.UUID], generation: int) -> None:
    cache.put(cached_name(key), found, (key_tag(found[1]), user_tag(found[0].id)), generation)


def cached_name(key: str) -> str:
    """A key's name in the process cache: its hash, so that no secret sits in a dict's keys."""
    return hash_key(key).hex()


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, lambda: NotFound("API key not found", code="API_KEY_NOT_FOUND"))


async def list_keys(
    conn: db.Connection, user_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """One page of the user's live keys and how many there are in all."""
    records = await conn.fetch(SELECT_ALL, user_id, limit, offset)
    return records, await conn.fetchval(COUNT_LIVE, user_id)


async def new_key(
    conn: db.Connection, user_id: uuid.UUID, name: str | Unset | None
) -> tuple[str, dict[str, Any]]:
    """Validate the request (UNSET: no name given) and make a key; the secret is returned this once."""
    name = validate.text(name, "name", required=True, min_length=1, max_length=100)
    assert name is not None
    if await conn.fetchval(COUNT_LIVE, user_id) >= MAX_KEYS:
        raise ValidationError(
            f"at most {MAX_KEYS} live API keys per user; revoke one first", code="TOO_MANY_KEYS"
        )
    return await create_api_key(conn, user_id, name)


async def revoke(conn: db.Connection, redis: Redis, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Revoke one of the user's keys; the next request made with it, to any process, is a 401."""
    if await conn.fetchval(REVOKE, key_id, user_id) is None:
        raise NotFound("API key not found", code="API_KEY_NOT_FOUND")
    await local_cache.forget(redis, key_tag(key_id))
