"""The page behind an invite's link, ``/invite/<token>``: a form to choose a first password.

Plain HTML with no script, so the link works in any browser before the dashboard exists. GET
only shows the form (it changes nothing); the form's POST spends the link, as
``POST /api/auth/set-password`` does, and answers a page saying what happened (200: the answer is
for a person; the API route gives the status codes). The token in the path is never logged: request logs
name the route pattern only.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from api.html_pages import page
from api.state import CLOCK, POOL
from engine.errors import MonodutyError
from engine.teams import invites

routes = web.RouteTableDef()
# What engine.teams.invites makes; any other path is simply not found.
TOKEN = "{token:mdi_[A-Za-z0-9_-]{43}}"  # noqa: S105 - a route pattern

FORM = """<p>{message}</p>
<form method="post">
<label>New password (at least 8 characters)<br>
<input type="password" name="password" minlength="8" maxlength="256" required autofocus></label>
<p><button type="submit">Set password</button></p>
</form>"""


@routes.get(f"/invite/{TOKEN}")
async def show_form(request: web.Request) -> web.Response:
    return page("Choose your password", FORM.format(message="You were invited to Monoduty."))


@routes.post(f"/invite/{TOKEN}")
async def submit_form(request: web.Request) -> web.Response:
    # The form sends urlencoded; anything else has no password field we would read.
    form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
    password = form.get("password")
    wanted = invites.Acceptance(request.match_info["token"], password if isinstance(password, str) else None)
    try:
        async with request.app[POOL].acquire() as conn:
            user = await invites.accept_invite(conn, wanted, request.app[CLOCK].now())
    except MonodutyError as exc:
        if exc.code == invites.InvalidInvite.code:
            return page("Link no longer valid", f"<p>{escape(exc.message)}.</p>")
        return page("Choose your password", FORM.format(message=escape(exc.message)))
    done = f"<p>The password of {escape(user.email)} is set. Log in with it from now on.</p>"
    return page("Password set", done)
