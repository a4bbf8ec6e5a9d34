"""The page behind a message's action links, ``/a/<token>`` (engine.incidents.action_page).

GET shows the message's incident(s) and a button per action still open (Acknowledge, Resolve),
only the one asked for with ``?action=``; it changes nothing, because mail scanners and link
previewers fetch every link. POST acts: the action is the form's ``action`` field, else the
URL's ``?action=`` (an ntfy button POSTs the link as it is, with no body). The answer is for
whoever asked: a browser (``Accept: text/html``) gets a page saying what happened, anything else
(ntfy's http action) JSON.

The token is the only credential. A forged, altered or expired one is a 403 ACTION_LINK_INVALID
(a page saying so for a browser), decided before any database work: checking costs one HMAC
and there is nothing to guess, so unlike API keys no failure counter guards it. It is never
logged (request logs name the route pattern only), and every answer is kept out of caches and
other sites' Referer headers.
"""

from __future__ import annotations

from html import escape
from typing import Any

from aiohttp import web

from api.follow_ups import queue_follow_ups
from api.html_pages import PRIVATE, page
from api.responses import error, ok
from api.state import CLOCK, POOL, SETTINGS
from engine.errors import MonodutyError
from engine.incidents import action_page, channel_actions
from engine.incidents.action_page import View
from engine.incidents.channel_actions import Action, Grant, Outcome

routes = web.RouteTableDef()
# A signed payload and its signature (channel_actions.token); redeem() checks the rest.
TOKEN = r"{token:[A-Za-z0-9_-]{1,200}\.[A-Za-z0-9_-]{1,100}}"  # noqa: S105 - a route pattern
PATH = f"{channel_actions.ROUTE}{TOKEN}"

LABELS = {Action.ACKNOWLEDGE: "Acknowledge", Action.RESOLVE: "Resolve"}
DONE = {Action.ACKNOWLEDGE: "acknowledged", Action.RESOLVE: "resolved"}
UNCHANGED = "unchanged"
NOT_VALID = "This link is not valid, or it has expired (links last 24 hours). Open the incident in Monoduty."
# ntfy's web app runs a button's POST with fetch() from its own origin, and without this header
# cannot read the answer and shows the action as failed. No cookie is involved: the URL is the grant.
JSON_HEADERS = {**PRIVATE, "Access-Control-Allow-Origin": "*"}


def _wants_page(request: web.Request) -> bool:
    """A browser navigating or submitting the form asks for HTML; ntfy and scripts do not."""
    return "text/html" in request.headers.get("Accept", "")


def _grant(request: web.Request) -> Grant:
    settings, now = request.app[SETTINGS], request.app[CLOCK].now()
    return channel_actions.redeem(settings.secret_key, request.match_info["token"], now)


def _refused(request: web.Request, exc: MonodutyError) -> web.Response:
    if not _wants_page(request):
        return error(exc.status, exc.code, exc.message, headers=JSON_HEADERS)
    if exc.code == channel_actions.invalid().code:
        return page("Link not valid", f"<p>{escape(NOT_VALID)}</p>", status=exc.status)
    return page("Nothing changed", f"<p>{escape(exc.message)}.</p>", status=exc.status)


@routes.get(PATH)
async def show(request: web.Request) -> web.Response:
    """The incident(s) and a button per action; nothing changes until one is pressed."""
    try:
        grant = _grant(request)
        asked = request.query.get("action")
        wanted = action_page.parse_action(asked) if asked is not None else None
        async with request.app[POOL].acquire() as conn:
            view = await action_page.view(conn, grant)
    except MonodutyError as exc:
        return _refused(request, exc)
    if wanted is None:
        return page(_heading(view), _body(request, view, view.offers))
    if wanted in view.offers:
        note = "<p>Nothing changes until you press the button.</p>"
        return page(f"{LABELS[wanted]} {_heading(view)}?", _body(request, view, (wanted,), note))
    note = f"<p>Nothing left to {wanted.value}.</p>"
    return page(_heading(view), _body(request, view, view.offers, note))


@routes.post(PATH)
async def submit(request: web.Request) -> web.Response:
    """Act as the link's person; a page or JSON saying what changed (again: nothing)."""
    try:
        grant = _grant(request)
        # The form sends urlencoded; ntfy sends no body at all, its URL names the action.
        form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
        field = form.get("action")
        action = action_page.parse_action(field if isinstance(field, str) else request.query.get("action"))
        async with request.app[POOL].acquire() as conn:
            outcome, view = await action_page.act(conn, grant, action, request.app[CLOCK].now())
    except MonodutyError as exc:
        return _refused(request, exc)
    await queue_follow_ups(request, outcome)  # committed: the RESOLVED notices may go
    status = DONE[action] if outcome.changed else UNCHANGED
    summary = _summary(action, outcome, view)
    if _wants_page(request):
        title = status.capitalize() if outcome.changed else "Nothing changed"
        return page(title, _body(request, view, view.offers, f"<p>{escape(summary)}</p>"))
    changed = set(outcome.changed)
    incidents = [{**_to_api(i), "changed": i["id"] in changed} for i in view.incidents]
    return ok(headers=JSON_HEADERS, status=status, message=summary, incidents=incidents)


def _to_api(incident: dict[str, Any]) -> dict[str, Any]:
    return {key: incident[key] for key in ("id", "number", "title", "status")}


def _heading(view: View) -> str:
    if len(view.incidents) == 1:
        return f"#{view.incidents[0]['number']} {view.incidents[0]['title']}"
    return f"{len(view.incidents)} incidents"


def _summary(action: Action, outcome: Outcome, view: View) -> str:
    """``Acknowledged #42, #43.`` / ``#42 was already acknowledged.``"""
    by_id = {i["id"]: i for i in view.incidents}
    parts = []
    if outcome.changed:
        numbers = ", ".join(f"#{by_id[i]['number']}" for i in outcome.changed)
        parts.append(f"{DONE[action].capitalize()} {numbers}.")
    parts += [f"#{by_id[i]['number']} was already {by_id[i]['status']}." for i in outcome.unchanged]
    return " ".join(parts) or "Nothing to do: this message names no incident."


def _body(request: web.Request, view: View, offers: tuple[Action, ...], note: str = "") -> str:
    items = "".join(
        f"<li><strong>#{i['number']}</strong> {escape(i['title'])}: <em>{escape(i['status'])}</em></li>"
        for i in view.incidents
    )
    if not offers:
        return f"{note}<ul>{items}</ul><p>Nothing left to do here.</p>"
    buttons = " ".join(
        f'<button type="submit" name="action" value="{a.value}">{LABELS[a]}</button>' for a in offers
    )
    # Relative to /a/: the token itself, without the query, so the button pressed names the action.
    target = escape(request.match_info["token"])
    return f'{note}<ul>{items}</ul><form method="post" action="{target}"><p>{buttons}</p></form>'
