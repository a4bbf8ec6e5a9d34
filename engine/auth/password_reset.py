"""Password reset by a one-time link sent by email (only when SMTP is configured).

Asking for one answers the same whatever the address: the email goes out (or not) after the
answer, so neither the words nor the time tell whether an account exists. A link is a random
token whose SHA-256 Redis keeps for ``TTL`` seconds with the user's id, as a login link
(engine.auth.sessions); setting the new password spends it (GETDEL: it works once) and ends every
session of the user, so whoever had the old password is signed out. One email per address per
``RESEND_AFTER`` seconds: the form cannot be used to flood someone's inbox.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from redis.asyncio import Redis

from engine import db
from engine.auth import accounts, sessions
from engine.auth.users import User, find_user, get_user
from engine.channels.email import submit
from engine.settings import SmtpSettings

log = logging.getLogger("monoduty.password_reset")

TTL = 30 * 60
RESEND_AFTER = 60
LINK_PREFIX = "mdr_"  # what the dashboard's /reset-password/<token> route matches
KEY = "monoduty:password-reset:"
SENT = "monoduty:password-reset-sent:"


def _key(token: str) -> str:
    return KEY + hashlib.sha256(token.encode()).hexdigest()


async def create_link(redis: Redis, user_id: uuid.UUID) -> str:
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    await redis.set(_key(token), str(user_id), ex=TTL)
    return token


async def link_is_live(redis: Redis, token: str) -> bool:
    """Whether the token would still set a password (the form's page asks; it spends nothing)."""
    return 20 <= len(token) <= 100 and bool(await redis.exists(_key(token)))


async def user_to_email(conn: db.Connection, redis: Redis, email: str) -> User | None:
    """The user a reset email should go to now: one with this address, not emailed within
    RESEND_AFTER seconds; else None (and the caller answers the same either way)."""
    if not isinstance(email, str) or not 3 <= len(email.strip()) <= 254:
        return None
    user = await find_user(conn, email.strip())
    if user is None:
        return None
    first = await redis.set(SENT + str(user.id), "1", ex=RESEND_AFTER, nx=True)
    return user if first else None


def compose(to: str, link: str, from_addr: str) -> EmailMessage:
    """The reset email: plain text (the link is ours; nothing in it comes from anyone else)."""
    email = EmailMessage()
    email["Subject"] = "Set a new Monoduty password"
    email["From"] = from_addr
    email["To"] = to
    email["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(from_addr)[1].rpartition("@")[2] or "monoduty.localhost"
    email["Message-ID"] = make_msgid(domain=domain)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(
        "Someone (we hope you) asked to set a new password for your Monoduty account.\n\n"
        f"Set it here (the link works once, for {TTL // 60} minutes):\n{link}\n\n"
        "If it was not you, ignore this email: your password stays as it is.\n"
    )
    return email


async def send_link(redis: Redis, smtp: SmtpSettings, user: User, base_url: str) -> None:
    """Make a link for ``user`` and email it; a failure is logged (the person may ask again)."""
    token = await create_link(redis, user.id)
    email = compose(user.email, f"{base_url}/reset-password/{token}", smtp.from_addr)
    try:
        await submit(smtp, email, user.email)
    except Exception as exc:  # an SMTP or network error: never the address or the token in the log
        log.warning("password reset email not sent: %s", type(exc).__name__, extra={"outcome": "failed"})
        return
    log.info("password reset email sent", extra={"outcome": "sent"})


async def reset(conn: db.Connection, redis: Redis, token: str, new_password: object) -> User | None:
    """Set the new password with the link's token, once; None when the link is used, expired or
    never made. The password is checked (a ValidationError) before the link is spent."""
    accounts.check_password(new_password, "password")
    if not 20 <= len(token) <= 100:
        return None
    raw = await redis.getdel(_key(token))
    if raw is None:
        return None
    user_id = uuid.UUID(raw.decode() if isinstance(raw, bytes) else raw)
    assert isinstance(new_password, str)
    await accounts.set_password(conn, user_id, new_password)
    await sessions.end_all(redis, user_id)
    return await get_user(conn, user_id)
