"""API key management: list, create (the secret shown once), revoke. Key format and hashing live
in engine.users, next to the lookup that authenticates every request.

Revocation is immediate: every request looks its key up in PostgreSQL (no cache to outlive it).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from engine import db, validate
from engine.errors import NotFound, ValidationError
from engine.users import create_api_key

FIELDS = {"name"}
MAX_KEYS = 100  # live keys per user; also the page size of the list

SELECT_ALL = """
SELECT id, name, prefix, created_at, last_used_at FROM api_keys
WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id LIMIT $2 OFFSET $3
"""
COUNT_LIVE = "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL"
REVOKE = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id
"""


def parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("API key not found", code="API_KEY_NOT_FOUND") from None


def to_api(record: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(record["id"]),
        "name": record["name"],
        "prefix": record["prefix"],
        "created_at": record["created_at"],
        "last_used_at": record["last_used_at"],
    }


async def list_keys(
    conn: db.Connection, user_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """One page of the user's live keys and how many there are in all."""
    records = await conn.fetch(SELECT_ALL, user_id, limit, offset)
    return records, await conn.fetchval(COUNT_LIVE, user_id)


async def new_key(conn: db.Connection, user_id: uuid.UUID, body: object) -> tuple[str, dict[str, Any]]:
    """Validate the request and make a key; the secret is returned this once."""
    body = validate.require_object(body)
    validate.only_known(body, FIELDS)
    name = validate.string(body, "name", required=True, min_length=1, max_length=100)
    assert name is not None
    if await conn.fetchval(COUNT_LIVE, user_id) >= MAX_KEYS:
        raise ValidationError(
            f"at most {MAX_KEYS} live API keys per user; revoke one first", code="TOO_MANY_KEYS"
        )
    return await create_api_key(conn, user_id, name)


async def revoke(conn: db.Connection, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Revoke one of the user's keys; the next request made with it is a 401."""
    if await conn.fetchval(REVOKE, key_id, user_id) is None:
        raise NotFound("API key not found", code="API_KEY_NOT_FOUND")
