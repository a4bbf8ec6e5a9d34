"""Who may see a dashboard page, and what every dashboard answer carries.

A dashboard route is one whose name starts with ``dashboard.`` (``ROUTE_PREFIX``). Signed in
means the API's own session (the ``monoduty_session`` cookie, engine.auth.sessions), resumed as
/api resumes it; nothing new to secure. Every route but the ``PUBLIC`` ones needs it:

- without a live session, a page redirects to sign-in (``?next=`` the page, and "your session
  ended" when a cookie was sent, or the request came from a page: a form, a fragment). A POST is
  refused the same way before its handler runs, so nothing is half done. An htmx request gets
  the redirect as ``HX-Redirect`` (htmx then loads the page itself).
- a POST needs the session's CSRF token, in ``X-CSRF-Token`` (htmx sends it, from the body's
  ``hx-headers``) or a form's ``csrf_token`` field, and no Origin but this site's.

Errors (not found, a rule the engine refused, storage away) become an HTML page, not JSON. Every
answer gets ``HEADERS``: a strict Content-Security-Policy (scripts and styles only from this
site, so no inline script runs even if some markup slipped through; no framing).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from api.auth import CSRF_HEADER, SAFE_METHODS, SESSION, csrf_matches, origin_allowed
from api.dashboard.render import BADGE_CAP, CSRF_FIELD, UNREAD, form, render, safe_next
from api.state import POOL, REDIS, SETTINGS, USER
from engine import notifications
from engine.auth import sessions
from engine.auth.sessions import COOKIE_NAME
from engine.auth.users import get_user
from engine.errors import STORAGE_DOWN, Forbidden, MonodutyError

log = logging.getLogger("monoduty.dashboard")

ROUTE_PREFIX = "dashboard."
# Pages for people who are not signed in (yet): their forms check the Origin only.
PUBLIC = frozenset(
    {
        "dashboard.sign_in",
        "dashboard.sign_up",
        "dashboard.login_link",
        "dashboard.forgot_password",
        "dashboard.reset_password",
        "dashboard.static",
    }
)
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
ENDED = "ended"  # ?reason= on the sign-in page: the session expired or was signed out elsewhere


def is_dashboard(request: web.Request) -> bool:
    name = request.match_info.route.name
    return bool(name and name.startswith(ROUTE_PREFIX))


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every dashboard answer (pages, redirects, the event stream, errors)."""
    if is_dashboard(request):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)


@web.middleware
async def dashboard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_dashboard(request):
        return await handler(request)
    try:
        return await _guarded(request, handler)
    except MonodutyError as exc:
        return _error_page(request, exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc.status, exc.reason)
    except STORAGE_DOWN as exc:
        log.warning("storage unreachable on a dashboard page: %s", type(exc).__name__)
        message = "A storage service is unreachable for a moment. Reload this page shortly."
        return _error_page(request, 503, message)
    except Exception:
        log.exception("unhandled error on dashboard page %s", request.match_info.route.name)
        return _error_page(request, 500, "Something went wrong on our side. It is logged; try again.")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    name = request.match_info.route.name
    changes_state = request.method not in SAFE_METHODS
    if changes_state and not origin_allowed(request):
        raise Forbidden("This form was sent from another site, so nothing was done.")
    if name == "dashboard.static":
        return await handler(request)
    cookie = request.cookies.get(COOKIE_NAME)
    session = (
        await sessions.resume(request.app[REDIS], cookie, request.app[SETTINGS].session_ttl)
        if cookie
        else None
    )
    user = None
    if session is not None:
        async with request.app[POOL].acquire() as conn:
            user = await get_user(conn, session.user_id)
            if user is not None and request.method == "GET" and "HX-Request" not in request.headers:
                # A whole page: its navigation shows the inbox's unread count (api/dashboard/inbox.py).
                request[UNREAD] = await notifications.unread_up_to(conn, user.id, BADGE_CAP)
    if session is not None and user is not None:
        request[USER] = user
        request[SESSION] = session
    elif name not in PUBLIC:
        # A form or a fragment comes from a page that was signed in: its session ended (in this
        # tab or another: signing out there deletes the cookie here too).
        return _to_sign_in(
            request, ended=cookie is not None or changes_state or "HX-Request" in request.headers
        )
    if session is not None and changes_state and name not in PUBLIC:
        given = request.headers.get(CSRF_HEADER) or (await form(request)).get(CSRF_FIELD, "")
        if not csrf_matches(session, given):
            raise Forbidden("This page was out of date, so nothing was done. Reload it and try again.")
    return await handler(request)


def _to_sign_in(request: web.Request, *, ended: bool) -> web.Response:
    """To the sign-in page, and back here (the page the browser shows) once signed in."""
    if request.method in SAFE_METHODS and "HX-Request" not in request.headers:
        back = request.path_qs
    else:  # a form or a fragment: back to the page it was on
        shown = urlsplit(request.headers.get("HX-Current-URL") or request.headers.get("Referer") or "/")
        back = safe_next(shown.path + (f"?{shown.query}" if shown.query else ""))
    query = {"next": back, **({"reason": ENDED} if ended else {})}
    location = "/sign-in?" + urlencode(query)
    if "HX-Request" in request.headers:
        return web.Response(status=401, headers={"HX-Redirect": location})
    return web.Response(status=303, headers={"Location": location})


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 503: "Unavailable"}
    title = titles.get(status, "Something is wrong" if status >= 500 else "Cannot do that")
    return render(request, "error.html", {"title": title, "message": message}, status=status)
