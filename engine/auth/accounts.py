"""Accounts: passwords (argon2id), sign-up, login with throttling, profile and password change.

Login answers the same ``INVALID_CREDENTIALS`` for an unknown email and a wrong password, and
spends the same argon2 work on both (a dummy hash for unknown emails) so timing tells nothing.
Failures are counted in Redis per (email, client address): after ``MAX_FAILURES`` the pair gets
429 ``LOGIN_THROTTLED`` until ``FAILURE_WINDOW`` seconds pass without a failure (each failure
pushes it back, so hammering keeps the door shut). Hashing runs in a thread: argon2 is meant to
be slow and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from engine import db, local_cache, validate
from engine.auth import sessions
from engine.auth.sessions import Session
from engine.auth.users import USER_COLUMNS, User, create_user, user_tag
from engine.channels.formats import validate_email, validate_phone, validate_topic
from engine.errors import Conflict, MonodutyError, ValidationError
from engine.oncall.validation import time_zone
from engine.ratelimit import FailureCounter
from engine.settings import RateLimit
from engine.validate import UNSET, Unset

MIN_PASSWORD = 8
MAX_PASSWORD = 256  # bounds the hashing work one request can ask for
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
# Per (email, client address); each failure restarts the window: see the module docstring.
LOGIN_FAILURES = FailureCounter("login-failures", RateLimit(MAX_FAILURES, FAILURE_WINDOW), sliding=True)


SELECT_LOGIN = f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
SELECT_HASH = "SELECT password_hash FROM users WHERE id = $1"
SET_PASSWORD = "UPDATE users SET password_hash = $2 WHERE id = $1"  # noqa: S105
UPDATE_PROFILE = f"""
UPDATE users SET email = $2, name = $3, phone = $4, push_topic = $5, time_zone = $6 WHERE id = $1
RETURNING {USER_COLUMNS}
"""

# argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane): strong, and cheap
# enough in memory that a burst of logins cannot exhaust the host. Hashes made with other
# parameters are upgraded at the next successful login (check_needs_rehash).
log = logging.getLogger("monoduty.security")

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


# What each request asks for. UNSET is a field left out (a profile change keeps its value), None a
# null; values typed ``object`` are checked here whatever their type (engine/validate.py).
@dataclass(frozen=True)
class Registration:
    email: object = UNSET
    password: object = UNSET
    name: str | Unset | None = UNSET
    phone: object = UNSET


@dataclass(frozen=True)
class Credentials:
    email: object = UNSET
    password: object = UNSET


@dataclass(frozen=True)
class PasswordChange:
    current_password: object = UNSET
    new_password: object = UNSET


@dataclass(frozen=True)
class ProfileChange:
    email: object = UNSET
    name: str | Unset | None = UNSET
    phone: object = UNSET
    push_topic: object = UNSET
    time_zone: object = UNSET


class InvalidCredentials(MonodutyError):
    status = 401
    code = "INVALID_CREDENTIALS"

    def __init__(self) -> None:
        super().__init__("email or password is not right")


class LoginThrottled(MonodutyError):
    status = 429
    code = "LOGIN_THROTTLED"

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins; wait before trying again")
        self.headers = {"Retry-After": str(max(retry_after, 1))}


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a real password, only spends the time a real check takes")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(stored: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def check_password(value: object, name: str) -> str:
    """The password if it is one Monoduty accepts (8-256 characters), else a ValidationError."""
    return _password(value, name)


def _password(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{name} is required", field=name)
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise ValidationError(
            f"{name} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field=name, code="WEAK_PASSWORD"
        )
    return value


async def set_password(conn: db.Connection, user_id: uuid.UUID, password: str) -> None:
    """Give a user a password (``monoduty users create --password``), checked like a sign-up's."""
    await conn.execute(SET_PASSWORD, user_id, await hash_password(_password(password, "password")))


async def register(conn: db.Connection, wanted: Registration) -> User:
    """Create a user with a password (the caller has checked that sign-up is open)."""
    email = validate_email(None if wanted.email is UNSET else wanted.email, field="email")
    password = _password(wanted.password, "password")
    name = validate.text(wanted.name, "name", max_length=100, nullable=True)
    given_phone = None if wanted.phone is UNSET else wanted.phone
    phone = validate_phone(given_phone, field="phone") if given_phone is not None else None
    async with conn.transaction():
        user = await create_user(conn, email, name=name, phone=phone)
        await set_password(conn, user.id, password)
    return user


def _login_identity(email: str, client: str) -> str:
    return f"{email.lower()}|{client}"  # client may come from a header: any byte (surrogateescape)


async def login(conn: db.Connection, redis: Redis, given: Credentials, client: str) -> User:
    """The user whose email and password these are, or InvalidCredentials / LoginThrottled."""
    email, password = given.email, given.password
    if not isinstance(email, str) or not isinstance(password, str) or len(email) > 254:
        raise ValidationError("email and password are required", field="email")
    identity = _login_identity(email, client)
    spent = await LOGIN_FAILURES.refusal(redis, identity)
    if spent is not None:
        log.warning("login throttled after repeated failures", extra={"outcome": "throttled"})
        raise LoginThrottled(spent.reset)
    record = await conn.fetchrow(SELECT_LOGIN, email.strip())
    stored = record["password_hash"] if record is not None else None
    if len(password) > MAX_PASSWORD or not await _verify(stored, password):
        await LOGIN_FAILURES.failed(redis, identity)
        log.info("login refused", extra={"outcome": "invalid_credentials"})
        raise InvalidCredentials()
    await LOGIN_FAILURES.clear(redis, identity)
    assert record is not None
    # Parameters were raised since this hash was made (stored is set: the password matched it).
    if stored is not None and _hasher.check_needs_rehash(stored):
        await conn.execute(SET_PASSWORD, record["id"], await hash_password(password))
    return User.from_record(record)


async def has_password(conn: db.Connection, user_id: uuid.UUID) -> bool:
    """Whether the user can sign in with a password (an invited or dev user may have none yet)."""
    return await conn.fetchval(SELECT_HASH, user_id) is not None


async def change_password(
    conn: db.Connection, redis: Redis, user: User, change: PasswordChange, *, keep: Session | None
) -> None:
    """Set a new password; the current one is required when the user has one. Every web session
    of the user but ``keep`` (the one asking, if it is a session) ends."""
    new = _password(change.new_password, "new_password")
    current = change.current_password
    if current is not UNSET and not isinstance(current, str):  # checked even when no password is set yet
        raise ValidationError("current_password must be a string", field="current_password")
    stored = await conn.fetchval(SELECT_HASH, user.id)
    if stored is not None and (
        not isinstance(current, str) or not await _verify(stored, current[: MAX_PASSWORD + 1])
    ):
        raise ValidationError(
            "current_password is not right", field="current_password", code="WRONG_PASSWORD"
        )
    await conn.execute(SET_PASSWORD, user.id, await hash_password(new))
    await sessions.end_all(redis, user.id, keep=keep)


async def update_profile(conn: db.Connection, redis: Redis, user: User, change: ProfileChange) -> User:
    """Change email, name, phone, push topic or time zone; a field left out keeps its value, null
    clears it (no time zone: the dashboard uses the browser's)."""
    email = user.email if change.email is UNSET else validate_email(change.email, field="email")
    name = (
        user.name
        if change.name is UNSET
        else validate.text(change.name, "name", max_length=100, nullable=True)
    )
    phone, topic = user.phone, user.push_topic
    if change.phone is not UNSET:
        phone = validate_phone(change.phone, field="phone") if change.phone is not None else None
    if change.push_topic is not UNSET:
        raw = change.push_topic
        topic = validate_topic(raw, field="push_topic") if raw is not None else None
    zone = user.time_zone
    if change.time_zone is not UNSET:
        zone = str(time_zone(change.time_zone)) if change.time_zone is not None else None
    try:
        record = await conn.fetchrow(UPDATE_PROFILE, user.id, email, name, phone, topic, zone)
    except asyncpg.UniqueViolationError:
        raise Conflict("a user with this email already exists", code="EMAIL_TAKEN") from None
    assert record is not None
    await local_cache.forget(redis, user_tag(user.id))  # copies cached with API keys
    return User.from_record(record)
