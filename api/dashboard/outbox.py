"""The dev outbox (``monoduty dev`` only): what would have been sent for the caller's alerts,
newest first, as ``GET /api/dev/outbox`` lists it (api.dev.outbox_entries). Outside dev the page
is not found and the navigation has no link to it.

Live: the list asks again when the event stream says an incident changed, and every few seconds
(a page is written by a worker after its incident changed, so the event alone may come first).
"""

from __future__ import annotations

from aiohttp import web

from api.dashboard import views
from api.dashboard.render import fragment_for, render
from api.dev import outbox_entries
from api.state import CLOCK, SETTINGS
from engine.errors import NotFound
from engine.masking import mask_target

routes = web.RouteTableDef()
FRAGMENT = "outbox-list"


@routes.get("/outbox", name="dashboard.outbox")
async def outbox_page(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].dev:
        raise NotFound("This page exists only under `monoduty dev`.")
    now = request.app[CLOCK].now()
    entries = [
        {
            "id": entry["id"],
            "channel": views.CHANNEL_LABELS.get(entry["channel"], entry["channel"]),
            # The dev user's own addresses: shown masked all the same, as pages show them.
            "target": mask_target(entry["target"]),
            "subject": entry["subject"] or "",
            "body": entry["body"] or "",
            "age": views.ago(entry["created_at"], now),
            "at": views.clock_time(entry["created_at"]),
        }
        for entry in await outbox_entries(request)
    ]
    context = {"section": "outbox", "entries": entries}
    template = "_outbox_list.html" if fragment_for(request, FRAGMENT) else "outbox.html"
    return render(request, template, context)
