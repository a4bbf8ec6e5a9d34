"""Webhooks in the dashboard: the list with statistics, the create form, one webhook with its URL
and a ready-to-paste configuration for its senders.

The form is turned into the engine's ``WebhookInput`` (engine.webhooks, as ``POST /api/webhooks``
does) and the engine's checks are the form's: a ValidationError is shown next to the field it
names, with the field's label in place of the engine's name for it.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.dashboard import views
from api.dashboard.render import form, form_lists, render, see_other
from api.state import AVAILABLE_TYPES, CLOCK, POOL, public_url
from engine import webhooks
from engine.channels.registry import CHANNEL_TYPES, TARGET_KEYS
from engine.errors import ValidationError
from engine.incidents import queries
from engine.teams import Role
from engine.teams.members import list_teams
from engine.validate import UNSET

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
CHANNEL_FIELD = "channel"  # the checkboxes: one value per notification type
HINTS = {
    "EMAIL": "Addresses, separated by commas",
    "SMS": "Numbers in international format (+14155550123), separated by commas",
    "PUSH_NOTIF": "ntfy topics, separated by commas",
    "CALL": "Numbers in international format, separated by commas",
}
LABELS = {"name": "Name", "description": "Description", "channels": "Channels", "team": "Team"}
_TARGET_ERROR = re.compile(r"target_channels\.(\w+)(?:\[(\d+)\])?")


def _channels() -> list[dict[str, str]]:
    return [
        {
            "type": kind,
            "label": views.channel_label(kind),
            "field": f"target_{TARGET_KEYS[kind]}",
            "hint": HINTS.get(kind, "Targets, separated by commas"),
        }
        for kind in CHANNEL_TYPES
    ]


def _split(raw: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\n]", raw) if part.strip()]


def _wanted(given: dict[str, str], types: list[str]) -> webhooks.WebhookInput:
    targets = {
        TARGET_KEYS[kind]: _split(given.get(f"target_{TARGET_KEYS[kind]}", ""))
        for kind in types
        if kind in TARGET_KEYS and _split(given.get(f"target_{TARGET_KEYS[kind]}", ""))
    }
    return webhooks.WebhookInput(
        name=given.get("name", ""),
        description=given.get("description") or None,
        notification_types=types,
        target_channels=targets,
        team_id=given.get("team") or UNSET,
    )


def field_error(exc: ValidationError) -> tuple[str, str]:
    """(the form field an engine error is about, its message in the form's words)."""
    field = exc.field or ""
    target = _TARGET_ERROR.match(field)
    if target is not None:
        key, index = target.group(1), target.group(2)
        label = views.TARGET_LABELS.get(key, key.title()) + " targets"
        label += f" (entry {int(index) + 1})" if index is not None else ""
        rest = exc.message[len(target.group(0)) :] if exc.message.startswith(target.group(0)) else ""
        return f"target_{key}", (label + rest) if rest else exc.message
    head = re.match(r"\w+", field)
    name = {"notification_types": "channels", "team_id": "team"}.get(head.group() if head else "", field)
    if name not in LABELS:
        return "", exc.message
    message = exc.message
    if head is not None and message.startswith(head.group()):
        message = LABELS[name] + message[len(head.group()) :]
    return name, message


async def _form_page(
    request: web.Request, values: dict[str, Any], errors: dict[str, str], *, status: int = 200
) -> web.Response:
    user = current_user(request)
    available = request.app[AVAILABLE_TYPES]
    async with request.app[POOL].acquire() as conn:
        teams = [t for t in await list_teams(conn, user.id) if Role(t["role"]).at_least(Role.ADMIN)]
    context = {
        "section": "webhooks",
        "values": values,
        "errors": errors,
        "channels": _channels(),
        "available": sorted(available),
        "teams": [{"id": str(t["id"]), "name": "Personal" if t["personal"] else t["name"]} for t in teams],
    }
    return render(request, "webhook_new.html", context, status=status)


@routes.get("/webhooks", name="dashboard.webhooks")
async def webhook_list(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        records = await webhooks.list_webhooks(conn, user.id, limit=200)
    now = request.app[CLOCK].now()
    context = {"section": "webhooks", "webhooks": [views.webhook_row(r, now) for r in records]}
    return render(request, "webhooks.html", context)


@routes.post("/webhooks", name="dashboard.webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    user = current_user(request)
    given = await form(request)
    types = (await form_lists(request, CHANNEL_FIELD))[CHANNEL_FIELD]
    available = request.app[AVAILABLE_TYPES]
    try:
        async with request.app[POOL].acquire() as conn:
            record = await webhooks.create_webhook(conn, user, _wanted(given, types), available)
    except ValidationError as exc:
        name, message = field_error(exc)
        return await _form_page(request, {**given, "channel": types}, {name: message}, status=400)
    return see_other(f"/webhooks/{record['id']}")


@routes.get("/webhooks/new", name="dashboard.webhook_new")
async def new_webhook(request: web.Request) -> web.Response:
    return await _form_page(request, {"channel": ["EMAIL"]}, {})


def sender_config(url: str) -> dict[str, str]:
    """What to paste into each sender to point it at this webhook."""
    alertmanager = (
        "receivers:\n"
        "  - name: monoduty\n"
        "    webhook_configs:\n"
        f"      - url: {url}\n"
        "        send_resolved: true\n"
    )
    curl = (
        f"curl -X POST {url} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        """  -d '{"title": "Disk almost full", "message": "/var at 95%", "severity": "warning"}'"""
    )
    return {"alertmanager": alertmanager, "curl": curl}


@routes.get(f"/webhooks/{ID}", name="dashboard.webhook")
async def webhook_page(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await webhooks.get_webhook(conn, user.id, webhook_id)
        recent, _ = await queries.list_page(
            conn, user.id, {"webhook": str(webhook_id), "status": "all", "limit": "10"}
        )
    now = request.app[CLOCK].now()
    url = f"{public_url(request)}/{record['token']}"
    context = {
        "section": "webhooks",
        "webhook": views.webhook_row(record, now),
        "url": url,
        "config": sender_config(url),
        "incidents": [views.incident_row(row, now) for row in recent],
    }
    # The page shows the secret URL; "Referrer-Policy: same-origin" keeps this page's own URL (an
    # id, no secret) from other sites anyway.
    return render(request, "webhook.html", context)
