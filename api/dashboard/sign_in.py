"""Signing in and out of the dashboard: email and password, sign-up (only with
MONODUTY_ALLOW_SIGNUP), and the one-time login link `monoduty dev` prints.

Each is the API's own account code (engine.auth.accounts, engine.auth.sessions): the same
throttled login, the same session and cookie as ``POST /api/auth/login``. The login link's page
(GET) only shows a button: mail scanners and link previewers open links, and must not spend it.
"""

from __future__ import annotations

from aiohttp import web

from api.accounts import set_session_cookie
from api.auth import current_session
from api.dashboard.guard import ENDED
from api.dashboard.render import form, render, safe_next, see_other
from api.state import POOL, REDIS, SETTINGS, USER
from engine.auth import accounts, sessions
from engine.auth.sessions import COOKIE_NAME, LOGIN_LINK_PREFIX
from engine.auth.users import User, get_user
from engine.errors import MonodutyError, NotFound, ValidationError

routes = web.RouteTableDef()
LOGIN_TOKEN = f"{{token:{LOGIN_LINK_PREFIX}[A-Za-z0-9_-]{{43}}}}"
REASONS = {
    ENDED: "Your session has ended. Sign in again to go on; nothing was changed.",
    "signed-out": "You are signed out.",
    "password-set": "Your new password is set. Sign in with it.",
}
LINK_SPENT = (
    "This sign-in link was used already or has expired (links work once, for 15 minutes). "
    "`monoduty dev` prints a new one each time it starts."
)


async def _start_session(request: web.Request, user: User, next_page: str) -> web.Response:
    """Sign ``user`` in (a fresh session id, as every login) and go to ``next_page``."""
    cookie, _ = await sessions.log_in(
        request.app[REDIS],
        user.id,
        request.app[SETTINGS].session_ttl,
        previous=request.cookies.get(COOKIE_NAME),
        client=request.headers.get("User-Agent"),
    )
    response = see_other(next_page)
    set_session_cookie(request, response, cookie)
    return response


@routes.get("/sign-in", name="dashboard.sign_in")
async def sign_in_page(request: web.Request) -> web.Response:
    next_page = safe_next(request.query.get("next"))
    if request.get(USER) is not None:
        return see_other(next_page)
    message = REASONS.get(request.query.get("reason", ""), "")
    context = {"next": next_page, "message": message, "error": "", "email": "", **_reset(request)}
    return render(request, "sign_in.html", context)


def _reset(request: web.Request) -> dict[str, bool]:
    """Whether the page offers a password reset (it needs email: api/dashboard/password_reset.py)."""
    return {"reset_open": request.app[SETTINGS].smtp is not None}


@routes.post("/sign-in", name="dashboard.sign_in")
async def sign_in(request: web.Request) -> web.Response:
    given = await form(request)
    next_page = safe_next(given.get("next"))
    credentials = accounts.Credentials(given.get("email", ""), given.get("password", ""))
    try:
        async with request.app[POOL].acquire() as conn:
            user = await accounts.login(conn, request.app[REDIS], credentials, request.remote or "unknown")
    except MonodutyError as exc:
        context = {
            "next": next_page,
            "message": "",
            "error": exc.message,
            "email": given.get("email", ""),
            **_reset(request),
        }
        response = render(request, "sign_in.html", context, status=exc.status)
        response.headers.update(getattr(exc, "headers", {}))
        return response
    return await _start_session(request, user, next_page)


def _signup_open(request: web.Request) -> None:
    if not request.app[SETTINGS].allow_signup:
        raise NotFound("Sign-up is closed on this server; ask an operator for an account.")


@routes.get("/sign-up", name="dashboard.sign_up")
async def sign_up_page(request: web.Request) -> web.Response:
    _signup_open(request)
    return render(request, "sign_up.html", {"values": {}, "errors": {}, "error": ""})


@routes.post("/sign-up", name="dashboard.sign_up")
async def sign_up(request: web.Request) -> web.Response:
    _signup_open(request)
    given = await form(request)
    wanted = accounts.Registration(
        email=given.get("email", ""), password=given.get("password", ""), name=given.get("name") or None
    )
    try:
        async with request.app[POOL].acquire() as conn:
            user = await accounts.register(conn, wanted)
    except MonodutyError as exc:
        field = exc.field if isinstance(exc, ValidationError) else None
        errors = {field: exc.message} if field in ("email", "password", "name") else {}
        values = {"email": given.get("email", ""), "name": given.get("name", "")}
        context = {"values": values, "errors": errors, "error": "" if errors else exc.message}
        return render(request, "sign_up.html", context, status=exc.status)
    return await _start_session(request, user, "/")


@routes.post("/sign-out", name="dashboard.sign_out")
async def sign_out(request: web.Request) -> web.Response:
    session = current_session(request)
    if session is not None:
        await sessions.end(request.app[REDIS], session)
    response = see_other("/sign-in?reason=signed-out")
    response.del_cookie(COOKIE_NAME, path="/")
    return response


@routes.get(f"/login/{LOGIN_TOKEN}", name="dashboard.login_link")
async def login_link_page(request: web.Request) -> web.Response:
    # The token is in the URL: the guard's "Referrer-Policy: same-origin" keeps it from other
    # sites (no-referrer would also make the browser send "Origin: null" with the form).
    return render(request, "login_link.html", {"error": ""})


@routes.post(f"/login/{LOGIN_TOKEN}", name="dashboard.login_link")
async def use_login_link(request: web.Request) -> web.Response:
    user_id = await sessions.spend_login_link(request.app[REDIS], request.match_info["token"])
    user = None
    if user_id is not None:
        async with request.app[POOL].acquire() as conn:
            user = await get_user(conn, user_id)
    if user is None:
        return render(request, "login_link.html", {"error": LINK_SPENT}, status=400)
    return await _start_session(request, user, "/")
