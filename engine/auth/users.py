"""Users: who they are and their own contacts (the default target of each channel).

Their API keys are in engine/auth/api_keys.py, their passwords and profiles in engine/auth/accounts.py,
their teams (a personal one made with the account) in engine/teams/.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from engine import db, local_cache
from engine.channels.formats import validate_email, validate_phone
from engine.channels.registry import default_targets
from engine.errors import Conflict
from engine.oncall import contacts
from engine.teams.membership import create_personal_team


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    name: str | None
    phone: str | None
    push_topic: str | None
    time_zone: str | None = None  # IANA name the dashboard shows times in; None: the browser's

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> User:
        return cls(
            record["id"],
            record["email"],
            record["name"],
            record["phone"],
            record["push_topic"],
            record["time_zone"],
        )

    def default_target(self, key: str) -> str | None:
        """The owner's own contact for a channel's target key (email, sms, push, call)."""
        return default_targets(self).get(key)


USER_COLUMNS = "id, email, name, phone, push_topic, time_zone"

INSERT_USER = f"""
INSERT INTO users (id, email, name, phone) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING {USER_COLUMNS}
"""

SELECT_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = $1"
SELECT_USER_BY_EMAIL = f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)"
# Two rows at most: enough to tell "exactly one user" from "several".
SELECT_FIRST_USERS = f"SELECT {USER_COLUMNS} FROM users ORDER BY created_at LIMIT 2"


async def create_user(
    conn: db.Connection, email: str, *, name: str | None = None, phone: str | None = None
) -> User:
    """Create a user, with their personal team (named after them) and their default contact
    methods and notification rules, in one transaction; a second user with the same email (any
    case) is a Conflict."""
    email = validate_email(email, field="email")
    if phone is not None:
        phone = validate_phone(phone, field="phone")
    async with conn.transaction():
        record = await conn.fetchrow(INSERT_USER, uuid.uuid4(), email, name, phone)
        if record is None:
            raise Conflict("a user with this email already exists", code="EMAIL_TAKEN")
        user = User.from_record(record)
        await create_personal_team(conn, user.id, name or email)
        await contacts.create_defaults(
            conn, user.id, email=email, phone=phone, push_topic=user.push_topic, now=datetime.now(UTC)
        )
    return user


# A user's id → the user, for the web sessions' requests (api/auth.py).
UserCache = local_cache.LocalCache[User]
LOCAL_SECONDS = 10.0


def user_cache() -> UserCache:
    return local_cache.LocalCache("users", LOCAL_SECONDS)


async def cached_user(pool: asyncpg.Pool, cache: UserCache, user_id: uuid.UUID) -> User | None:
    """``get_user`` through this process's cache (a profile change empties it everywhere)."""
    found = cache.get(str(user_id))
    if not isinstance(found, local_cache.Miss):
        return found
    generation = cache.generation
    async with pool.acquire() as conn:
        user = await get_user(conn, user_id)
    if user is not None:
        cache.put(str(user_id), user, (user_tag(user_id),), generation)
    return user


def user_tag(user_id: uuid.UUID) -> str:
    """What a change to the user is published as (engine.local_cache): cached copies are dropped."""
    return f"user:{user_id}"


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
