"""Who is calling: a Bearer API key (programs) resolved to the owning user."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from api.state import POOL, USER
from engine.errors import MonodutyError
from engine.users import User, authenticate_key

# /api routes anyone may call.
PUBLIC_PATHS = frozenset({"/api/status", "/api/response-time", "/api/uptime"})


class Unauthorized(MonodutyError):
    status = 401
    code = "UNAUTHORIZED"


def current_user(request: web.Request) -> User:
    user = request.get(USER)
    if user is None:  # a route outside /api asked for a user: a programming error
        raise Unauthorized("authentication required")
    return user


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/api/") or path in PUBLIC_PATHS or path.startswith("/api/auth/"):
        return await handler(request)
    key = _bearer(request)
    if key is None:
        raise Unauthorized("authentication required: send Authorization: Bearer <api key>")
    async with request.app[POOL].acquire() as conn:
        found = await authenticate_key(conn, key)
    if found is None:
        raise Unauthorized("invalid or revoked API key", code="INVALID_API_KEY")
    request[USER] = found[0]
    return await handler(request)
