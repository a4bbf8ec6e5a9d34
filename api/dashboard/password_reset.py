"""Password reset from the sign-in page, when email is configured (MONODUTY_SMTP_HOST): an email
with a one-time link (engine.auth.password_reset), and the page that sets the new password.

Asking answers the same page for every address, at once: the email is sent after the answer,
so neither words nor timing say whether an account exists. The link's page (GET) only shows the
form: mail scanners open links, and must not spend it.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from api.dashboard.render import form, render, see_other
from api.state import POOL, REDIS, SETTINGS, public_url
from engine.auth import password_reset
from engine.errors import NotFound, ValidationError
from engine.settings import SmtpSettings

log = logging.getLogger("monoduty.dashboard")
routes = web.RouteTableDef()
TOKEN = f"{{token:{password_reset.LINK_PREFIX}[A-Za-z0-9_-]{{43}}}}"
LINK_SPENT = (
    "This link was used already or has expired (a link works once, for 30 minutes). Ask for a new one below."
)
# The emails being sent: held so that a task is not collected before it is done.
_sending: set[asyncio.Task[None]] = set()


def _smtp(request: web.Request) -> SmtpSettings:
    smtp = request.app[SETTINGS].smtp
    if smtp is None:
        raise NotFound("Password reset needs email, which this server has not set up; ask an operator.")
    return smtp


@routes.get("/forgot-password", name="dashboard.forgot_password")
async def forgot_page(request: web.Request) -> web.Response:
    _smtp(request)
    return render(request, "forgot_password.html", {"sent": False, "email": ""})


@routes.post("/forgot-password", name="dashboard.forgot_password")
async def ask_for_link(request: web.Request) -> web.Response:
    smtp = _smtp(request)
    email = (await form(request)).get("email", "")
    async with request.app[POOL].acquire() as conn:
        user = await password_reset.user_to_email(conn, request.app[REDIS], email)
    if user is not None:
        task = asyncio.create_task(
            password_reset.send_link(request.app[REDIS], smtp, user, public_url(request))
        )
        _sending.add(task)
        task.add_done_callback(_sending.discard)
    return render(request, "forgot_password.html", {"sent": True, "email": email})


@routes.get(f"/reset-password/{TOKEN}", name="dashboard.reset_password")
async def reset_page(request: web.Request) -> web.Response:
    live = await password_reset.link_is_live(request.app[REDIS], request.match_info["token"])
    context = {"error": "" if live else LINK_SPENT, "field_error": ""}
    return render(request, "reset_password.html", context, status=200 if live else 400)


@routes.post(f"/reset-password/{TOKEN}", name="dashboard.reset_password")
async def set_new_password(request: web.Request) -> web.Response:
    given = await form(request)
    try:
        async with request.app[POOL].acquire() as conn:
            user = await password_reset.reset(
                conn, request.app[REDIS], request.match_info["token"], given.get("password", "")
            )
    except ValidationError as exc:  # too short or long: the link is not spent, try again
        message = exc.message.replace("password must be", "The password must be")
        return render(request, "reset_password.html", {"error": "", "field_error": message}, status=400)
    if user is None:
        return render(request, "reset_password.html", {"error": LINK_SPENT, "field_error": ""}, status=400)
    return see_other("/sign-in?reason=password-set")
