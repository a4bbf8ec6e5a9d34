"""The incident list (the dashboard's home page) and one incident, with their actions.

The pages read through engine.incidents.queries and act through the same calls as
``/api/incidents`` (api.incidents: acknowledge, resolve, escalate; engine notes). Each page has
a fragment htmx asks for when the event stream says an incident changed (``HX-Target``: the id
of the element it refreshes), so a change shows without a reload.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from api import incidents as api_incidents
from api.auth import current_user
from api.dashboard import views
from api.dashboard.render import form, fragment_for, render, safe_next, see_other
from api.inputs import query
from api.state import CLOCK, POOL
from engine import webhooks
from engine.auth.users import get_user
from engine.incidents import actions, queries

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
PAGE_SIZE = 50
# The list's filters, in the order the page offers them; "open" first, and the default.
FILTERS = {
    "open": "Open",
    "triggered": "Triggered",
    "acknowledged": "Acknowledged",
    "resolved": "Resolved",
    "all": "All",
}
LIST_FRAGMENT = "incident-list"
DETAIL_FRAGMENT = "incident-detail"
ACTIONS: dict[str, Callable[[web.Request, uuid.UUID], Awaitable[None]]] = {
    "acknowledge": api_incidents.acknowledge_incident,
    "resolve": api_incidents.resolve_incident,
    "escalate": api_incidents.escalate_incident,
}


@routes.get("/", name="dashboard.incidents")
async def incident_list(request: web.Request) -> web.Response:
    user = current_user(request)
    params = query(request, "status", "cursor")
    status = params.get("status", "open")
    wanted = {
        "status": status,
        "limit": str(PAGE_SIZE),
        **({"cursor": params["cursor"]} if "cursor" in params else {}),
    }
    async with request.app[POOL].acquire() as conn:
        rows, cursor = await queries.list_page(conn, user.id, wanted)
        triggered = await queries.count_triggered(conn, user.id)
        has_webhooks = await webhooks.count_webhooks(conn, user.id) > 0
    now = request.app[CLOCK].now()
    context = {
        "section": "incidents",
        "rows": [views.incident_row(row, now) for row in rows],
        "status": status,
        "status_label": FILTERS.get(status, status),
        "filters": FILTERS,
        "next_cursor": cursor,
        "paged": "cursor" in params,
        "triggered": triggered,
        "has_webhooks": has_webhooks,
        # The tab's title counts what waits for someone, so a background tab says so too.
        "page_title": f"({triggered}) Incidents" if triggered else "Incidents",
        "fragment": fragment_for(request, LIST_FRAGMENT),
    }
    template = "_incident_list.html" if context["fragment"] else "incidents.html"
    return render(request, template, context)


@routes.get(f"/incidents/{ID}", name="dashboard.incident")
async def incident_page(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        found = await queries.get_incident(conn, user.id, incident_id)
        webhook = await webhooks.get_webhook(conn, user.id, found["incident"]["webhook_id"])
        people = {}
        for person_id in views.people_ids(found):
            someone = await get_user(conn, person_id)
            if someone is not None:
                people[person_id] = someone.name or someone.email
    incident = views.incident_detail(found, people, webhook["name"], request.app[CLOCK].now())
    context = {"section": "incidents", "incident": incident}
    template = "_incident_detail.html" if fragment_for(request, DETAIL_FRAGMENT) else "incident.html"
    return render(request, template, context)


@routes.post(f"/incidents/{ID}/{{action:acknowledge|resolve|escalate}}", name="dashboard.incident_action")
async def act(request: web.Request) -> web.Response:
    """A button on the list or the incident page; back to that page once done."""
    incident_id = actions.parse_id(request.match_info["id"])
    await ACTIONS[request.match_info["action"]](request, incident_id)
    return see_other(safe_next((await form(request)).get("next"), f"/incidents/{incident_id}"))


@routes.post(f"/incidents/{ID}/notes", name="dashboard.incident_notes")
async def add_note(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    text = (await form(request)).get("text", "")
    async with request.app[POOL].acquire() as conn:
        await actions.add_note(conn, user.id, incident_id, {"text": text}, request.app[CLOCK].now())
    return see_other(f"/incidents/{incident_id}#notes")
