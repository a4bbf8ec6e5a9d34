"""Handlers for /api/auth/*: sign-up, login, an invite's first password, logout, the caller's profile
and password."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.auth import current_session, current_user
from api.inputs import fields, json_body, wire_names
from api.responses import ok
from api.state import CLOCK, POOL, REDIS, SETTINGS
from engine.auth import accounts, sessions
from engine.auth.sessions import COOKIE_NAME
from engine.auth.users import User
from engine.channels.registry import default_targets
from engine.errors import Forbidden
from engine.teams import invites

routes = web.RouteTableDef()

# Each request body's fields: wire name -> the engine's (its input in engine.auth.accounts).
REGISTER_NAMES = {"email": "email", "password": "password", "name": "name", "phone": "phone"}
LOGIN_NAMES = {"email": "email", "password": "password"}
PROFILE_NAMES = {
    "email": "email",
    "name": "name",
    "phone": "phone",
    "pushTopic": "push_topic",
    "timeZone": "time_zone",
}
PASSWORD_NAMES = {"currentPassword": "current_password", "newPassword": "new_password"}
SET_PASSWORD_NAMES = {"token": "token", "password": "password"}


async def _logged_in(request: web.Request, user: User, http_status: int = 200) -> web.Response:
    """Start the login's session, set its cookie, answer the CSRF token."""
    cookie, session = await sessions.log_in(
        request.app[REDIS],
        user.id,
        request.app[SETTINGS].session_ttl,
        previous=request.cookies.get(COOKIE_NAME),
        client=request.headers.get("User-Agent"),
    )
    response = ok(http_status, user=profile(user), csrf_token=session.csrf_token)
    set_session_cookie(request, response, cookie)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, cookie: str) -> None:
    """The session's cookie, for the API and the dashboard alike: HttpOnly (no script reads it),
    Lax (another site's form or frame does not carry it), Secure over HTTPS."""
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=sessions.MAX_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )


@routes.post("/api/auth/register")
async def register(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].allow_signup:
        raise Forbidden("sign-up is closed on this server; ask an operator", code="SIGNUP_DISABLED")
    wanted = accounts.Registration(**fields(await json_body(request), REGISTER_NAMES, text=("name",)))
    async with request.app[POOL].acquire() as conn:
        user = await accounts.register(conn, wanted)
    return await _logged_in(request, user, 201)


@routes.post("/api/auth/login")
async def login(request: web.Request) -> web.Response:
    given = accounts.Credentials(**fields(await json_body(request), LOGIN_NAMES))
    async with request.app[POOL].acquire() as conn:
        user = await accounts.login(conn, request.app[REDIS], given, request.remote or "unknown")
    return await _logged_in(request, user)


@routes.post("/api/auth/set-password")
async def set_password(request: web.Request) -> web.Response:
    """Spend an invite's one-time link on a first password, and log in."""
    wanted = invites.Acceptance(**fields(await json_body(request), SET_PASSWORD_NAMES, text=("token",)))
    async with request.app[POOL].acquire() as conn:
        user = await invites.accept_invite(conn, wanted, request.app[CLOCK].now())
    return await _logged_in(request, user)


@routes.post("/api/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """End the web session (a no-op for an API key: revoke keys with DELETE /api/api-keys/{id})."""
    current_user(request)
    session = current_session(request)
    if session is not None:
        await sessions.end(request.app[REDIS], session)
    response = ok(logged_out=session is not None)
    response.del_cookie(COOKIE_NAME, path="/")
    return response


@routes.get("/api/auth/me")
async def me(request: web.Request) -> web.Response:
    user = current_user(request)
    session = current_session(request)
    extra: dict[str, Any] = {"csrf_token": session.csrf_token} if session is not None else {}
    return ok(user=profile(user), **extra)


@routes.patch("/api/auth/me")
async def update_me(request: web.Request) -> web.Response:
    user = current_user(request)
    change = accounts.ProfileChange(**fields(await json_body(request), PROFILE_NAMES, text=("name",)))
    async with request.app[POOL].acquire() as conn:
        with wire_names(PROFILE_NAMES):
            updated = await accounts.update_profile(conn, request.app[REDIS], user, change)
    return ok(user=profile(updated))


@routes.post("/api/auth/password")
async def change_password(request: web.Request) -> web.Response:
    """Change the password; every other web session of the user ends."""
    user = current_user(request)
    change = accounts.PasswordChange(**fields(await json_body(request), PASSWORD_NAMES))
    async with request.app[POOL].acquire() as conn:
        with wire_names(PASSWORD_NAMES):
            await accounts.change_password(
                conn, request.app[REDIS], user, change, keep=current_session(request)
            )
    return ok(password_changed=True)


def profile(user: User) -> dict[str, Any]:
    """The user as GET /api/auth/me shows it, with the default contact of each channel."""
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "phone": user.phone,
        "push_topic": user.push_topic,
        "time_zone": user.time_zone,
        "default_targets": default_targets(user),
    }
