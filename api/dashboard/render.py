"""The dashboard's templates (Jinja2, every value autoescaped) and what every page is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from api.auth import current_session
from api.dashboard.assets import ASSETS
from api.state import SETTINGS, USER

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSRF_FIELD = "csrf_token"  # a form's copy of the session's CSRF token (htmx sends the header)
UNREAD = web.RequestKey("unread_notifications", int)  # the guard counts them for a whole page
BADGE_CAP = 100  # the navigation's badge counts this far ("99+")


def setup(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # the one rule that keeps a sender's text from becoming markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
    )


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """The page (or fragment) ``template`` with ``context`` and what every page has."""
    session = current_session(request)
    settings = request.app[SETTINGS]
    base = {
        "user": request.get(USER),
        "csrf_field": CSRF_FIELD,
        "csrf_token": session.csrf_token if session is not None else "",
        "asset": request.app[ASSETS].url,
        "section": "",
        "signup_open": settings.allow_signup,
        "dev": settings.dev,
        "here": request.path_qs,
        "unread": request.get(UNREAD, 0),
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def fragment_for(request: web.Request, target: str) -> bool:
    """Whether this is htmx asking to refresh the element with id ``target`` (not a whole page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == target


def safe_next(value: object, default: str = "/") -> str:
    """A path on this site to go to after a form, never another site (``//evil``, ``https:...``)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return default
    return value


def see_other(location: str) -> web.Response:
    """The answer to a form that worked: go (GET) there."""
    return web.Response(status=303, headers={"Location": location})


async def form(request: web.Request) -> dict[str, str]:
    """A form post's single-valued text fields (anything else in it is ignored)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {}
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def form_lists(request: web.Request, *names: str) -> dict[str, list[str]]:
    """The values of the form's repeated fields (checkboxes)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {name: [] for name in names}
    data = await request.post()
    return {name: [v for v in data.getall(name, []) if isinstance(v, str)] for name in names}
