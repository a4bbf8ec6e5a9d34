"""The incident list (the dashboard's home page) and one incident, with their actions.

The pages read through engine.incidents.queries and act through the same calls as
``/api/incidents`` (api.incidents: acknowledge, resolve, escalate, reassign; engine notes). Each
page has a fragment htmx asks for when the event stream says an incident changed (``HX-Target``:
the id of the element it refreshes), so a change shows without a reload.

The list's filters (status, team, webhook, severity) are a GET form: its URL is the page's, so a
filtered list can be bookmarked and shared; htmx swaps only the list and puts that URL in the
address bar. A selection of rows is acknowledged or resolved by one POST (``/incidents/bulk``),
each incident through the same call as its own button.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from api import incidents as api_incidents
from api.auth import current_user
from api.dashboard import maintenance, views
from api.dashboard.render import form, form_lists, fragment_for, render, safe_next, see_other
from api.dashboard.zones import viewer_zone
from api.inputs import query
from api.state import CLOCK, POOL
from engine import db, webhooks
from engine.auth.users import get_user
from engine.channels.base import SEVERITIES
from engine.errors import Conflict, Forbidden, NotFound, ValidationError
from engine.incidents import IncidentStatus, actions, queries
from engine.oncall import escalation
from engine.teams import Role
from engine.teams.members import list_members, list_teams

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
PAGE_SIZE = 50
BULK_MAX = 100  # more than a page: a selection is of one page's rows
# The list's filters, in the order the page offers them; "open" first, and the default.
FILTERS = {
    "open": "Open",
    "triggered": "Triggered",
    "acknowledged": "Acknowledged",
    "resolved": "Resolved",
    "all": "All",
}
FILTER_FIELDS = ("status", "team", "webhook", "severity")
DEFAULT_STATUS = "open"
LIST_FRAGMENT = "incident-list"
FILTER_FORM = "filters"  # the form's id: htmx names it in HX-Trigger
DETAIL_FRAGMENT = "incident-detail"
ACTIONS: dict[str, Callable[[web.Request, uuid.UUID], Awaitable[None]]] = {
    "acknowledge": api_incidents.acknowledge_incident,
    "resolve": api_incidents.resolve_incident,
    "escalate": api_incidents.escalate_incident,
}
BULK_ACTIONS = {"acknowledge": "Acknowledged", "resolve": "Resolved"}


def list_url(chosen: dict[str, str], cursor: str | None = None) -> str:
    """The list's address for these filters (the default status left out), and a page of it."""
    shown = {k: v for k, v in chosen.items() if not (k == "status" and v == DEFAULT_STATUS)}
    if cursor:
        shown["cursor"] = cursor
    return "/?" + urlencode(shown) if shown else "/"


def _with_query(path: str, **params: str) -> str:
    parts = urlsplit(path)
    extra = urlencode(params)
    return urlunsplit(("", "", parts.path, f"{parts.query}&{extra}" if parts.query else extra, ""))


def _bulk_notice(params: dict[str, str]) -> str:
    """What the last bulk action did, from the counts it put in the URL (numbers only)."""
    label = BULK_ACTIONS.get(params.get("done", ""))
    if label is None or not params.get("count", "").isdigit():
        return ""
    count = int(params["count"])
    text = f"{label} {count} incident{'' if count == 1 else 's'}."
    skipped = int(params["skipped"]) if params.get("skipped", "").isdigit() else 0
    if skipped:
        text += f" {skipped} could not be changed (resolved already, or not yours to change)."
    return text


@routes.get("/", name="dashboard.incidents")
async def incident_list(request: web.Request) -> web.Response:
    user = current_user(request)
    params = query(request, *FILTER_FIELDS, "cursor", "done", "count", "skipped")
    # An empty choice of the form ("any team") is no filter.
    chosen = {k: params[k] for k in FILTER_FIELDS if params.get(k)}
    chosen.setdefault("status", DEFAULT_STATUS)
    status = chosen["status"]
    wanted = {**chosen, "limit": str(PAGE_SIZE)}
    page_cursor = params.get("cursor") or None  # a live refresh of the first page sends it empty
    if page_cursor:
        wanted["cursor"] = page_cursor
    async with request.app[POOL].acquire() as conn:
        rows, cursor = await queries.list_page(conn, user.id, wanted)
        triggered = await queries.count_triggered(conn, user.id)
        teams = await list_teams(conn, user.id)
        hooks = await webhooks.list_webhooks(conn, user.id, limit=200)
    now = request.app[CLOCK].now()
    filtered = any(k != "status" for k in chosen)
    here = list_url(chosen, page_cursor)
    context = {
        "section": "incidents",
        "rows": [views.incident_row(row, now) for row in rows],
        "status": status,
        "status_label": FILTERS.get(status, status),
        "filters": FILTERS,
        "chosen": chosen,
        "filtered": filtered,
        "teams": [{"id": str(t["id"]), "name": views.team_name(t)} for t in teams],
        "webhooks": [{"id": str(h["id"]), "name": h["name"]} for h in hooks],
        "severities": [(s, views.SEVERITY_LABELS[s]) for s in SEVERITIES],
        "list_url": here,
        "next_url": list_url(chosen, cursor) if cursor else "",
        "first_url": list_url(chosen) if page_cursor else "",
        "cursor": page_cursor or "",
        "triggered": triggered,
        "has_webhooks": bool(hooks),
        "notice": _bulk_notice(params),
        # The tab's title counts what waits for someone, so a background tab says so too.
        "page_title": f"({triggered}) Incidents" if triggered else "Incidents",
        "fragment": fragment_for(request, LIST_FRAGMENT),
    }
    template = "_incident_list.html" if context["fragment"] else "incidents.html"
    response = render(request, template, context)
    if context["fragment"] and request.headers.get("HX-Trigger") == FILTER_FORM:
        response.headers["HX-Push-Url"] = here  # the address bar shows the filters
    return response


@routes.post("/incidents/bulk", name="dashboard.incident_bulk")
async def act_on_selection(request: web.Request) -> web.Response:
    """Acknowledge or resolve the selected incidents, each as its own button would; back to the
    list with how many changed (one that cannot, resolved meanwhile, is counted, not an error)."""
    given = await form(request)
    selected = list(dict.fromkeys((await form_lists(request, "incident"))["incident"]))
    action = given.get("action", "")
    if action not in BULK_ACTIONS:
        raise ValidationError("Choose Acknowledge or Resolve.", field="action")
    if not selected:
        raise ValidationError("Select one or more incidents first (the boxes at the start of each row).")
    if len(selected) > BULK_MAX:
        raise ValidationError(f"Select at most {BULK_MAX} incidents at once.")
    done = skipped = 0
    for raw in selected:
        try:
            await ACTIONS[action](request, actions.parse_id(raw))
            done += 1
        except (Conflict, Forbidden, NotFound):
            skipped += 1
    back = safe_next(given.get("next"), "/")
    return see_other(_with_query(back, done=action, count=str(done), skipped=str(skipped)))


async def _people(conn: db.Connection, found: dict[str, Any]) -> dict[uuid.UUID, str]:
    people: dict[uuid.UUID, str] = {}
    for person_id in views.people_ids(found):
        someone = await get_user(conn, person_id)
        if someone is not None:
            people[person_id] = someone.name or someone.email
    return people


@routes.get(f"/incidents/{ID}", name="dashboard.incident")
async def incident_page(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        found = await queries.get_incident(conn, user.id, incident_id)
        row = found["incident"]
        webhook = await webhooks.get_webhook(conn, user.id, row["webhook_id"])
        people = await _people(conn, found)
        # Whom it can be given to: its team's members (the engine checks again when it is done).
        reassignable = (
            row["status"] == IncidentStatus.TRIGGERED
            and row["escalation_policy_id"] is not None
            and Role(row["caller_role"]).at_least(Role.RESPONDER)
        )
        members = await list_members(conn, user.id, row["team_id"]) if reassignable else []
        now = request.app[CLOCK].now()
        held = await maintenance.incident_held(conn, user.id, row, now, viewer_zone(request)[0])
    incident = views.incident_detail(found, people, webhook["name"], now)
    incident["held"] = held
    incident["members"] = [{"id": str(m["user_id"]), "name": views.person(m)} for m in members]
    context = {"section": "incidents", "incident": incident}
    template = "_incident_detail.html" if fragment_for(request, DETAIL_FRAGMENT) else "incident.html"
    return render(request, template, context)


@routes.post(f"/incidents/{ID}/{{action:acknowledge|resolve|escalate}}", name="dashboard.incident_action")
async def act(request: web.Request) -> web.Response:
    """A button on the list or the incident page; back to that page once done."""
    incident_id = actions.parse_id(request.match_info["id"])
    await ACTIONS[request.match_info["action"]](request, incident_id)
    return see_other(safe_next((await form(request)).get("next"), f"/incidents/{incident_id}"))


@routes.post(f"/incidents/{ID}/reassign", name="dashboard.incident_reassign")
async def reassign(request: web.Request) -> web.Response:
    """Give the incident to a member of its team: they are paged now (api.incidents' reassign)."""
    incident_id = actions.parse_id(request.match_info["id"])
    chosen = (await form(request)).get("user") or None
    await api_incidents.reassign_incident(request, incident_id, escalation.ReassignInput(user_id=chosen))
    return see_other(f"/incidents/{incident_id}")


@routes.post(f"/incidents/{ID}/notes", name="dashboard.incident_notes")
async def add_note(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    text = (await form(request)).get("text", "")
    async with request.app[POOL].acquire() as conn:
        await actions.add_note(conn, user.id, incident_id, {"text": text}, request.app[CLOCK].now())
    return see_other(f"/incidents/{incident_id}#notes")
