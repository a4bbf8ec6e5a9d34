"""Web sessions, kept server-side in Redis: expiring, revocable, a new id at every login.

The browser holds only a random session id (in an HttpOnly cookie). Redis holds, under a SHA-256
of that id (so a Redis dump gives no usable cookie), the user's id, the CSRF token the page must
echo in ``X-CSRF-Token``, and the time of login. A session expires after ``session_ttl`` seconds
without use (each use pushes the expiry back, with GETEX: no extra round trip) and in any case
``MAX_AGE`` after login. A per-user set lists the user's sessions so that a password change can
end all the others, and the profile page can list them and end one (``list_sessions``, ``end_one``:
each is named there by a hash of its key, never anything a cookie could be made from).

A *login link* (``monoduty dev`` prints one) is a session not yet started: a random token whose
hash Redis keeps for ``LOGIN_LINK_TTL`` with the user's id. Spending it (GETDEL: two clicks at
once cannot both win) is the login; the link then works no more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

PREFIX = "monoduty:session:"
USER_SESSIONS = "monoduty:user-sessions:"
COOKIE_NAME = "monoduty_session"
MAX_AGE = 30 * 86400
LOGIN_LINK = "monoduty:login-link:"
LOGIN_LINK_TTL = 15 * 60
LOGIN_LINK_PREFIX = "mdl_"  # what the dashboard's /login/<token> route matches
MAX_CLIENT = 200  # characters of a login's User-Agent kept with its session


@dataclass(frozen=True)
class Session:
    key: str  # the Redis key: a hash of the cookie's value, never the value itself
    user_id: uuid.UUID
    csrf_token: str
    created: float


def _key(session_id: str, prefix: str = PREFIX) -> str:
    return prefix + hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


async def start(
    redis: Redis, user_id: uuid.UUID, ttl: int, *, client: str | None = None
) -> tuple[str, Session]:
    """A new session for the user: returns the cookie value (shown to the browser only) and the
    session. ``client`` (the login's User-Agent) is kept only to name it in the session list."""
    session_id = secrets.token_urlsafe(32)
    session = Session(_key(session_id), user_id, secrets.token_urlsafe(32), time.time())
    data: dict[str, object] = {
        "user_id": str(user_id),
        "csrf": session.csrf_token,
        "created": session.created,
    }
    if client:
        data["client"] = client[:MAX_CLIENT]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(session.key, json.dumps(data), ex=ttl)
        pipe.sadd(USER_SESSIONS + str(user_id), session.key)
        pipe.expire(USER_SESSIONS + str(user_id), MAX_AGE)
        await pipe.execute()
    return session_id, session


async def log_in(
    redis: Redis, user_id: uuid.UUID, ttl: int, *, previous: str | None, client: str | None = None
) -> tuple[str, Session]:
    """The session of a login: ``previous`` (the cookie the browser still sent) ends and the new one
    gets a fresh id, so an id planted in the browser before login is worth nothing after it."""
    if previous:
        old = await resume(redis, previous, ttl)
        if old is not None:
            await end(redis, old)
    return await start(redis, user_id, ttl, client=client)


async def resume(redis: Redis, session_id: str, ttl: int) -> Session | None:
    """The live session behind a cookie value, its idle expiry pushed back; None if gone or expired."""
    if not 20 <= len(session_id) <= 100 or not session_id.isascii():
        return None
    key = _key(session_id)
    raw = await redis.getex(key, ex=ttl)
    if raw is None:
        return None
    data = json.loads(raw)
    if time.time() - data["created"] > MAX_AGE:
        await redis.delete(key)
        return None
    return Session(key, uuid.UUID(data["user_id"]), data["csrf"], data["created"])


async def alive(redis: Redis, session: Session) -> bool:
    """Whether the session still exists, without pushing its idle expiry back (a page left open
    must not keep a session alive by itself)."""
    return bool(await redis.exists(session.key))


async def end(redis: Redis, session: Session) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(session.key)
        pipe.srem(USER_SESSIONS + str(session.user_id), session.key)
        await pipe.execute()


async def end_all(redis: Redis, user_id: uuid.UUID, *, keep: Session | None = None) -> None:
    """End every session of the user (but ``keep``): after a password change."""
    index = USER_SESSIONS + str(user_id)
    members = await redis.smembers(index)  # type: ignore[misc]
    keys = [k.decode() if isinstance(k, bytes) else k for k in members]
    doomed = [k for k in keys if keep is None or k != keep.key]
    if doomed:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(*doomed)
            pipe.srem(index, *doomed)
            await pipe.execute()


@dataclass(frozen=True)
class SessionInfo:
    id: str  # what the profile page names it by: a hash of its Redis key
    created: float
    last_used: float  # its idle expiry, less the idle time it is given
    current: bool
    client: str  # the User-Agent it signed in with ("" if none was sent)


def public_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


async def _members(redis: Redis, user_id: uuid.UUID) -> list[str]:
    members = await redis.smembers(USER_SESSIONS + str(user_id))  # type: ignore[misc]
    return sorted(k.decode() if isinstance(k, bytes) else k for k in members)


async def list_sessions(
    redis: Redis, user_id: uuid.UUID, ttl: int, *, current: Session | None
) -> list[SessionInfo]:
    """The user's live sessions, newest login first; read without pushing any expiry back.
    Index entries of sessions that expired by themselves are dropped on the way."""
    keys = await _members(redis, user_id)
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        found = await pipe.execute()
    now, live, gone = time.time(), [], []
    for key, raw, pttl in zip(keys, found[::2], found[1::2], strict=True):
        if raw is None or pttl is None or pttl < 0:
            gone.append(key)
            continue
        data = json.loads(raw)
        if data.get("user_id") != str(user_id) or now - data["created"] > MAX_AGE:
            continue
        last_used = min(now, max(data["created"], now - (ttl - pttl / 1000)))
        is_current = current is not None and current.key == key
        client = str(data.get("client", ""))
        live.append(SessionInfo(public_id(key), data["created"], last_used, is_current, client))
    if gone:
        await redis.srem(USER_SESSIONS + str(user_id), *gone)  # type: ignore[misc]
    return sorted(live, key=lambda s: s.created, reverse=True)


async def end_one(redis: Redis, user_id: uuid.UUID, session_id: str) -> bool:
    """End the user's session named ``session_id`` (a ``SessionInfo.id``); False if none is."""
    for key in await _members(redis, user_id):
        if hmac.compare_digest(public_id(key), session_id):
            await end(redis, Session(key, user_id, "", 0.0))
            return True
    return False


async def create_login_link(redis: Redis, user_id: uuid.UUID) -> str:
    """A one-time login token for the user, good for ``LOGIN_LINK_TTL`` seconds (shown once)."""
    token = LOGIN_LINK_PREFIX + secrets.token_urlsafe(32)
    await redis.set(_key(token, LOGIN_LINK), str(user_id), ex=LOGIN_LINK_TTL)
    return token


async def spend_login_link(redis: Redis, token: str) -> uuid.UUID | None:
    """The user a login token was made for, once; None when used, expired or never made."""
    if not 20 <= len(token) <= 100:
        return None
    raw = await redis.getdel(_key(token, LOGIN_LINK))
    return uuid.UUID(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else None
