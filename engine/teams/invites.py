"""One-time set-password links for people invited to a team by email.

An invite made for a new user holds a random token shown once (in the API answer, or printed by
``monoduty users invite``); only its SHA-256 is stored (256 random bits: a fast hash is as strong
as a slow one). The link works once, for ``TTL``, and only while the user still has no password:
a link can never reset a password someone has set since. A new link for a user replaces the
ones they have not used.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine import db, validate
from engine.auth.accounts import set_password
from engine.auth.users import User, get_user
from engine.errors import MonodutyError, ValidationError
from engine.validate import UNSET, Unset

TTL = timedelta(days=7)
TOKEN_PREFIX = "mdi_"  # noqa: S105 - a marker, not a secret

DROP_UNUSED = "DELETE FROM invites WHERE user_id = $1 AND used_at IS NULL"
INSERT_INVITE = """
INSERT INTO invites (id, user_id, team_id, invited_by, token_hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
# Taking the link and checking it are one statement, so two uses at once cannot both succeed.
USE_INVITE = """
UPDATE invites i SET used_at = $2
FROM users u
WHERE i.token_hash = $1 AND i.used_at IS NULL AND i.expires_at > $2
  AND u.id = i.user_id AND u.password_hash IS NULL
RETURNING i.user_id
"""


@dataclass(frozen=True)
class Invite:
    token: str  # the secret: shown once, never stored
    expires_at: datetime


class InvalidInvite(MonodutyError):
    status = 400
    code = "INVALID_INVITE"

    def __init__(self) -> None:
        super().__init__("this set-password link is not valid: it was used, has expired or was replaced")


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


async def create_invite(
    conn: db.Connection,
    user_id: uuid.UUID,
    *,
    team_id: uuid.UUID | None,
    invited_by: uuid.UUID | None,
    now: datetime,
) -> Invite:
    """A new set-password link for the user; their earlier unused links stop working."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    invite = Invite(token, now + TTL)
    async with conn.transaction():
        await conn.execute(DROP_UNUSED, user_id)
        await conn.execute(
            INSERT_INVITE, uuid.uuid4(), user_id, team_id, invited_by, _hash(token), now, invite.expires_at
        )
    return invite


@dataclass(frozen=True)
class Acceptance:
    """An invite's token and the password chosen with it."""

    token: str | Unset | None = UNSET
    password: object = UNSET


async def accept_invite(conn: db.Connection, wanted: Acceptance, now: datetime) -> User:
    """Set the invited user's password; the link is spent."""
    token = validate.text(wanted.token, "token", required=True, max_length=200)
    assert token is not None
    password = wanted.password
    if not isinstance(password, str):  # its length is checked by set_password, as a sign-up's
        raise ValidationError("password is required", field="password")
    async with conn.transaction():
        user_id = await conn.fetchval(USE_INVITE, _hash(token), now)
        if user_id is None:
            raise InvalidInvite()
        await set_password(conn, user_id, password)
        user = await get_user(conn, user_id)
    assert user is not None
    return user
