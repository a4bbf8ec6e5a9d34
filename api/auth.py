"""Who is calling: the one place that decides it, for every /api route.

- ``Authorization: Bearer <api key>`` (programs): the key is looked up by its hash.
- the ``monoduty_session`` cookie (the web): the session is looked up in Redis. A cookie-borne
  request that changes state (anything but GET/HEAD/OPTIONS) must echo the session's CSRF token
  in ``X-CSRF-Token``. A Bearer request needs none: a browser never adds that header by itself.
- any state-changing request without a Bearer key (so also login and sign-up) that carries an
  ``Origin`` other than our own is refused: another site cannot drive a logged-in browser.

Handlers ask ``current_user(request)`` (and ``current_session`` when they care about the web
session); both are set here.
"""

from __future__ import annotations

import contextlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from api.inputs import bearer
from api.state import API_KEYS, POOL, REDIS, SETTINGS, USER, USERS
from engine import ratelimit
from engine.auth import api_keys, sessions
from engine.auth.api_keys import authenticate_key
from engine.auth.sessions import COOKIE_NAME, Session
from engine.auth.users import User, cached_user
from engine.errors import Forbidden, Unauthorized
from engine.local_cache import Miss

# /api routes anyone may call.
PUBLIC_PATHS = frozenset(
    {
        "/api/status",
        "/api/response-time",
        "/api/uptime",
        "/api/auth/login",
        "/api/auth/register",
        "/api/auth/set-password",  # the invite's token is the credential
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"

SESSION = web.RequestKey("session", Session)


def current_user(request: web.Request) -> User:
    user = request.get(USER)
    if user is None:  # a route outside /api asked for a user: a programming error
        raise Unauthorized("authentication required")
    return user


def current_session(request: web.Request) -> Session | None:
    """The web session of a cookie-authenticated request; None for an API key."""
    return request.get(SESSION)


def origin_allowed(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request; the CSRF token still guards cookies
    own = {f"{request.scheme}://{request.host}".lower()}
    public = request.app[SETTINGS].public_url
    if public:
        parts = urlsplit(public)
        own.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origin.strip().lower() in own


def csrf_matches(session: Session, given: str) -> bool:
    """Whether ``given`` is the session's CSRF token (compared in constant time)."""
    # surrogateescape: a header may carry bytes that are not UTF-8; they just do not match.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), session.csrf_token.encode())


async def _user_of_key(request: web.Request, key: str) -> User:
    """The key's owner, from this process's cache when it has seen the key lately. Failed keys
    count per client address, checked before the database, so that presenting made-up keys (each
    a bucket of its own for the API limit) cannot buy unlimited lookups."""
    cache = request.app[API_KEYS]
    if api_keys.well_formed(key):
        cached = cache.get(api_keys.cached_name(key))
        if not isinstance(cached, Miss):
            return cached[0]  # a key seen lately, not revoked since (engine.local_cache)
    generation = cache.generation
    redis, client = request.app[REDIS], request.remote or "unknown"
    failures = ratelimit.FailureCounter("key-failures", request.app[SETTINGS].rate_limit_api)
    try:
        spent = await failures.refusal(redis, client)
    except (RedisError, OSError):
        spent = None  # fail open, as the API limit does: Redis away must not lock everyone out
    if spent is not None:
        raise ratelimit.RateLimited(spent, "too many failed API keys from this address; wait and retry")
    async with request.app[POOL].acquire() as conn:
        found = await authenticate_key(conn, key)
    if found is None:
        with contextlib.suppress(RedisError, OSError):
            await failures.failed(redis, client)
        raise Unauthorized("invalid or revoked API key", code="INVALID_API_KEY")
    api_keys.remember(cache, key, found, generation)
    return found[0]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/api/"):
        return await handler(request)
    key = bearer(request)
    changes_state = request.method not in SAFE_METHODS
    if changes_state and key is None and not origin_allowed(request):
        raise Forbidden("cross-site request refused (Origin is not this site)", code="ORIGIN_REFUSED")
    if path in PUBLIC_PATHS:
        return await handler(request)
    if key is not None:
        request[USER] = await _user_of_key(request, key)
        return await handler(request)
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie is None:
        raise Unauthorized("authentication required: log in, or send Authorization: Bearer <api key>")
    settings = request.app[SETTINGS]
    session = await sessions.resume(request.app[REDIS], cookie, settings.session_ttl)
    if session is None:
        raise Unauthorized("your session has ended; log in again", code="SESSION_EXPIRED")
    if changes_state and not csrf_matches(session, request.headers.get(CSRF_HEADER, "")):
        raise Forbidden(f"missing or wrong {CSRF_HEADER} header", code="CSRF_FAILED")
    user = await cached_user(request.app[POOL], request.app[USERS], session.user_id)
    if user is None:
        raise Unauthorized("your session has ended; log in again", code="SESSION_EXPIRED")
    request[USER] = user
    request[SESSION] = session
    return await handler(request)
