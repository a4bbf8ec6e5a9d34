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
from collections.abc import Mapping
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from engine import db, validate
from engine.auth import sessions
from engine.auth.sessions import Session
from engine.auth.users import USER_COLUMNS, User, create_user
from engine.channels.formats import validate_email, validate_phone, validate_topic
from engine.errors import Conflict, MonodutyError, ValidationError
from engine.ratelimit import FailureCounter
from engine.settings import RateLimit

MIN_PASSWORD = 8
MAX_PASSWORD = 256  # bounds the hashing work one request can ask for
MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
# Per (email, client address); each failure restarts the window: see the module docstring.
LOGIN_FAILURES = FailureCounter("login-failures", RateLimit(MAX_FAILURES, FAILURE_WINDOW), sliding=True)

REGISTER_FIELDS = {"email", "password", "name", "phone"}
PROFILE_FIELDS = {"email", "name", "phone", "pushTopic"}
PASSWORD_FIELDS = {"currentPassword", "newPassword"}
LOGIN_FIELDS = {"email", "password"}

SELECT_LOGIN = f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
SELECT_HASH = "SELECT password_hash FROM users WHERE id = $1"
SET_PASSWORD = "UPDATE users SET password_hash = $2 WHERE id = $1"  # noqa: S105
UPDATE_PROFILE = f"""
UPDATE users SET email = $2, name = $3, phone = $4, push_topic = $5 WHERE id = $1
RETURNING {USER_COLUMNS}
"""

# argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane): strong, and cheap
# enough in memory that a burst of logins cannot exhaust the host. Hashes made with other
# parameters are upgraded at the next successful login (check_needs_rehash).
log = logging.getLogger("monoduty.security")

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


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


def _password(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValidationError(f"{name} is required", field=name)
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise ValidationError(
            f"{name} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field=name, code="WEAK_PASSWORD"
        )
    return value


async def set_password(conn: db.Connection, user_id: uuid.UUID, password: str) -> None:
    """Give a user a password (``monoduty users create --password``), checked like a sign-up's."""
    await conn.execute(
        SET_PASSWORD, user_id, await hash_password(_password({"password": password}, "password"))
    )


async def register(conn: db.Connection, body: object) -> User:
    """Create a user with a password (the caller has checked that sign-up is open)."""
    body = validate.require_object(body)
    validate.only_known(body, REGISTER_FIELDS)
    email = validate_email(body.get("email"), field="email")
    password = _password(body, "password")
    name = validate.string(body, "name", max_length=100, nullable=True)
    phone = body.get("phone")
    phone = validate_phone(phone, field="phone") if phone is not None else None
    async with conn.transaction():
        user = await create_user(conn, email, name=name, phone=phone)
        await set_password(conn, user.id, password)
    return user


def _login_identity(email: str, client: str) -> str:
    return f"{email.lower()}|{client}"  # client may come from a header: any byte (surrogateescape)


async def login(conn: db.Connection, redis: Redis, body: object, client: str) -> User:
    """The user whose email and password these are, or InvalidCredentials / LoginThrottled."""
    body = validate.require_object(body)
    validate.only_known(body, LOGIN_FIELDS)  # as every other body: a typo is an error, not ignored
    email, password = body.get("email"), body.get("password")
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


async def change_password(
    conn: db.Connection, redis: Redis, user: User, body: object, *, keep: Session | None
) -> None:
    """Set a new password; the current one is required when the user has one. Every web session
    of the user but ``keep`` (the one asking, if it is a session) ends."""
    body = validate.require_object(body)
    validate.only_known(body, PASSWORD_FIELDS)
    new = _password(body, "newPassword")
    if not isinstance(body.get("currentPassword", ""), str):  # checked even when no password is set yet
        raise ValidationError("currentPassword must be a string", field="currentPassword")
    stored = await conn.fetchval(SELECT_HASH, user.id)
    if stored is not None:
        current = body.get("currentPassword")
        if not isinstance(current, str) or not await _verify(stored, current[: MAX_PASSWORD + 1]):
            raise ValidationError(
                "currentPassword is not right", field="currentPassword", code="WRONG_PASSWORD"
            )
    await conn.execute(SET_PASSWORD, user.id, await hash_password(new))
    await sessions.end_all(redis, user.id, keep=keep)


async def update_profile(conn: db.Connection, user: User, body: object) -> User:
    """Change email, name, phone or push topic; a field left out keeps its value, null clears it."""
    body = validate.require_object(body)
    validate.only_known(body, PROFILE_FIELDS)
    email = validate_email(body["email"], field="email") if "email" in body else user.email
    name = validate.string(body, "name", max_length=100, nullable=True) if "name" in body else user.name
    phone, topic = user.phone, user.push_topic
    if "phone" in body:
        phone = validate_phone(body["phone"], field="phone") if body["phone"] is not None else None
    if "pushTopic" in body:
        raw = body["pushTopic"]
        topic = validate_topic(raw, field="pushTopic") if raw is not None else None
    try:
        record = await conn.fetchrow(UPDATE_PROFILE, user.id, email, name, phone, topic)
    except asyncpg.UniqueViolationError:
        raise Conflict("a user with this email already exists", code="EMAIL_TAKEN") from None
    assert record is not None
    return User.from_record(record)
