"""Users and their API keys.

An API key reads ``md_live_<43 url-safe characters>``: the fixed prefix lets secret scanners
spot a leaked key, and the first characters (``prefix``) are kept in clear so a user can tell
keys apart. Only a SHA-256 of the whole key is stored; lookup is an index probe on that hash,
so no comparison of secrets happens in Python and there is nothing to time.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine import db
from engine.channels.formats import validate_email, validate_phone
from engine.channels.registry import default_targets
from engine.errors import Conflict

KEY_PREFIX = "md_live_"
_SHOWN_CHARS = len(KEY_PREFIX) + 6


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    name: str | None
    phone: str | None
    push_topic: str | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> User:
        return cls(record["id"], record["email"], record["name"], record["phone"], record["push_topic"])

    def default_target(self, key: str) -> str | None:
        """The owner's own contact for a channel's target key (email, sms, push, call)."""
        return default_targets(self).get(key)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


USER_COLUMNS = "id, email, name, phone, push_topic"

INSERT_USER = f"""
INSERT INTO users (id, email, name, phone) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING {USER_COLUMNS}
"""

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
SELECT u.id, u.email, u.name, u.phone, u.push_topic, hit.id AS api_key_id
FROM hit JOIN users u ON u.id = hit.user_id
"""

SELECT_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = $1"
SELECT_USER_BY_EMAIL = f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)"
# Two rows at most: enough to tell "exactly one user" from "several".
SELECT_FIRST_USERS = f"SELECT {USER_COLUMNS} FROM users ORDER BY created_at LIMIT 2"


async def create_user(
    conn: db.Connection, email: str, *, name: str | None = None, phone: str | None = None
) -> User:
    """Create a user; a second user with the same email (any case) is a Conflict."""
    email = validate_email(email, field="email")
    if phone is not None:
        phone = validate_phone(phone, field="phone")
    record = await conn.fetchrow(INSERT_USER, uuid.uuid4(), email, name, phone)
    if record is None:
        raise Conflict("a user with this email already exists", code="EMAIL_TAKEN")
    return User.from_record(record)


async def create_api_key(conn: db.Connection, user_id: uuid.UUID, name: str) -> tuple[str, dict[str, Any]]:
    """Make a key for the user. The secret is returned here once and never again."""
    key = new_api_key()
    record = await conn.fetchrow(
        INSERT_API_KEY, uuid.uuid4(), user_id, name, key[:_SHOWN_CHARS], hash_key(key)
    )
    assert record is not None
    return key, dict(record)


async def authenticate_key(conn: db.Connection, key: str) -> tuple[User, uuid.UUID] | None:
    """The user owning a live key and the key's id, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200 or not key.isascii():
        return None
    record = await conn.fetchrow(AUTHENTICATE_KEY, hash_key(key))
    if record is None:
        return None
    return User.from_record(record), record["api_key_id"]


async def get_user(conn: db.Connection, user_id: uuid.UUID) -> User | None:
    record = await conn.fetchrow(SELECT_USER, user_id)
    return User.from_record(record) if record else None


async def find_user(conn: db.Connection, email: str | None) -> User | None:
    """The user with this email (any case); with no email, the only user if there is exactly one."""
    if email is not None:
        record = await conn.fetchrow(SELECT_USER_BY_EMAIL, email)
        return User.from_record(record) if record else None
    records = await conn.fetch(SELECT_FIRST_USERS)
    return User.from_record(records[0]) if len(records) == 1 else None
