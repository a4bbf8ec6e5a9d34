"""Webhooks in the dashboard: the list with statistics, the create and edit form, one webhook with
its URL and a ready-to-paste configuration for each sender, a test send, pause and resume, and
delete (after a page that names the webhook).

The form is turned into the engine's ``WebhookInput`` (engine.webhooks, as ``POST`` and ``PATCH
/api/webhooks`` do) and the engine's checks are the form's: a ValidationError is shown next to
the field it names, with the field's label in place of the engine's name for it. Who may do what
(an admin of its team edits, pauses and deletes; a responder tests) is the engine's rule too.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.dashboard import heartbeats, maintenance, views
from api.dashboard.render import form, form_lists, fragment_for, render, see_other
from api.dashboard.zones import viewer_zone
from api.state import AVAILABLE_TYPES, CLOCK, POOL, REDIS, REQUEST_ID, public_url
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
LIST_FRAGMENT = "webhook-list"  # the list's element, refreshed live
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


def _wanted(given: dict[str, str], types: list[str], *, new: bool = True) -> webhooks.WebhookInput:
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
        team_id=(given.get("team") or UNSET) if new else UNSET,  # a webhook stays in its team
    )


def form_values(record: Any) -> dict[str, Any]:
    """An existing webhook as the form's fields (its targets in full: only an admin edits)."""
    values: dict[str, Any] = {
        "name": record["name"],
        "description": record["description"] or "",
        "channel": list(record["notification_types"]),
    }
    for key, targets in (record["targets"] or {}).items():
        values[f"target_{key}"] = ", ".join(targets)
    return values


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
    request: web.Request,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    status: int = 200,
    editing: dict[str, Any] | None = None,
) -> web.Response:
    """The create form, or (``editing``: the webhook's view) its edit form."""
    user = current_user(request)
    available = request.app[AVAILABLE_TYPES]
    teams = []
    if editing is None:
        async with request.app[POOL].acquire() as conn:
            teams = [t for t in await list_teams(conn, user.id) if Role(t["role"]).at_least(Role.ADMIN)]
    context = {
        "section": "webhooks",
        "values": values,
        "errors": errors,
        "channels": _channels(),
        "available": sorted(available),
        "teams": [{"id": str(t["id"]), "name": views.team_name(t)} for t in teams],
        "editing": editing,
    }
    return render(request, "webhook_new.html", context, status=status)


@routes.get("/webhooks", name="dashboard.webhooks")
async def webhook_list(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        records = await webhooks.list_webhooks(conn, user.id, limit=200)
    now = request.app[CLOCK].now()
    context = {
        "section": "webhooks",
        "webhooks": [views.webhook_row(r, now) for r in records],
        "notice": "The webhook is deleted; its URL answers 404 now." if request.query.get("deleted") else "",
    }
    fragment = fragment_for(request, LIST_FRAGMENT)
    return render(request, "_webhook_list.html" if fragment else "webhooks.html", context)


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


def sender_config(base: str, token: str) -> dict[str, str]:
    """What to paste into each sender to point it at this webhook (``base``: the public URL).
    The PagerDuty and Opsgenie entries are the drop-in APIs (README "Moving from PagerDuty or
    Opsgenie"): a sender keeps its client and changes its URL (and, for Opsgenie, its key)."""
    url = f"{base}/{token}"
    alertmanager = (
        "receivers:\n"
        "  - name: monoduty\n"
        "    webhook_configs:\n"
        f"      - url: {url}\n"
        "        send_resolved: true\n"
    )
    grafana = (
        "# Grafana: Alerting > Contact points > New, integration Webhook, URL as below;\n"
        "# or as a provisioning file (provisioning/alerting/monoduty.yaml):\n"
        "apiVersion: 1\n"
        "contactPoints:\n"
        "  - orgId: 1\n"
        "    name: monoduty\n"
        "    receivers:\n"
        "      - uid: monoduty\n"
        "        type: webhook\n"
        "        settings:\n"
        f"          url: {url}\n"
        "          httpMethod: POST\n"
    )
    curl = (
        f"curl -X POST {url} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        """  -d '{"title": "Disk almost full", "message": "/var at 95%", "severity": "warning"}'"""
    )
    pagerduty = (
        "# PagerDuty Events API v2 clients: this base URL instead of events.pagerduty.com\n"
        f"{url}\n"
        "# pdpyras: session.url = the URL above; pagerduty 7.x: base_url= the URL above\n"
        "# Alertmanager pagerduty_configs / Grafana's PagerDuty contact point (the key may stay):\n"
        f"url: {url}/v2/enqueue\n"
    )
    opsgenie = (
        "# Alertmanager opsgenie_configs (opsgenie-sdk: conf.host = api_url, API key = api_key):\n"
        f"api_url: {base}/\n"
        f"api_key: {token}\n"
        "# Grafana's Opsgenie contact point: this Alert API URL, and the api_key above\n"
        f"{base}/v2/alerts\n"
    )
    return {
        "alertmanager": alertmanager,
        "grafana": grafana,
        "curl": curl,
        "pagerduty": pagerduty,
        "opsgenie": opsgenie,
    }


@routes.get(f"/webhooks/{ID}", name="dashboard.webhook")
async def webhook_page(request: web.Request) -> web.Response:
    return await _detail_page(request)


async def _detail_page(
    request: web.Request,
    heartbeat_values: dict[str, str] | None = None,
    heartbeat_errors: dict[str, str] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    """One webhook; ``heartbeat_*``: its heartbeat form as sent, and the engine's error at a field."""
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    now = request.app[CLOCK].now()
    base = public_url(request)
    async with request.app[POOL].acquire() as conn:
        record = await webhooks.get_webhook(conn, user.id, webhook_id)
        last_test = await webhooks.last_test(conn, webhook_id)
        recent, _ = await queries.list_page(
            conn, user.id, {"webhook": str(webhook_id), "status": "all", "limit": "10"}
        )
        beats = await heartbeats.section(conn, user.id, webhook_id, base, now)
        quiet = await maintenance.webhook_quiet(conn, user.id, record, now, viewer_zone(request)[0])
    context = {
        "section": "webhooks",
        "webhook": views.webhook_row(record, now),
        "url": f"{base}/{record['token']}",
        "config": sender_config(base, record["token"]),
        "incidents": [views.incident_row(row, now) for row in recent],
        "last_test": views.test_send(last_test, now) if last_test else None,
        "can_admin": Role(record["caller_role"]).at_least(Role.ADMIN),
        "can_test": Role(record["caller_role"]).at_least(Role.RESPONDER),
        "notice": NOTICES.get(request.query.get("done", ""), ""),
        "heartbeats": beats,
        "quiet": quiet,
        "heartbeat_values": heartbeat_values or {"grace": "5m"},
        "heartbeat_errors": heartbeat_errors or {},
    }
    # The page shows the secret URL; "Referrer-Policy: same-origin" keeps this page's own URL (an
    # id, no secret) from other sites anyway.
    return render(request, "webhook.html", context, status=status)


@routes.post(f"/webhooks/{ID}", name="dashboard.webhook")
async def save_webhook(request: web.Request) -> web.Response:
    """The edit form: the fields it shows replace the webhook's (PATCH /api/webhooks/<id>)."""
    user = current_user(request)
    record = await _record_for(request, Role.ADMIN)
    given = await form(request)
    types = (await form_lists(request, CHANNEL_FIELD))[CHANNEL_FIELD]
    available = request.app[AVAILABLE_TYPES]
    try:
        async with request.app[POOL].acquire() as conn:
            await webhooks.update_webhook(
                conn,
                request.app[REDIS],
                user,
                record["id"],
                _wanted(given, types, new=False),
                available,
            )
    except ValidationError as exc:
        name, message = field_error(exc)
        editing = views.webhook_row(record, request.app[CLOCK].now())
        values = {**given, "channel": types}
        return await _form_page(request, values, {name: message}, status=400, editing=editing)
    return see_other(f"/webhooks/{record['id']}?done=saved")


NOTICES = {
    "tested": "A test alert is on its way to every channel; reload in a few seconds for its result.",
    "paused": "Paused: alerts sent to its URL are refused (409) until you resume it.",
    "resumed": "Resumed: alerts sent to its URL raise incidents again.",
    "saved": "Saved.",
    "heartbeat": "Heartbeat added: it is checked from its first ping to its URL.",
    "heartbeat_paused": "Heartbeat paused: it is not checked, and raises nothing, until you resume it.",
    "heartbeat_resumed": "Heartbeat resumed: it is checked again from now.",
}


async def _record_for(request: web.Request, minimum: Role) -> Any:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        return await webhooks.get_webhook(conn, user.id, webhook_id, minimum)


@routes.get(f"/webhooks/{ID}/edit", name="dashboard.webhook_edit")
async def edit_webhook_page(request: web.Request) -> web.Response:
    record = await _record_for(request, Role.ADMIN)
    editing = views.webhook_row(record, request.app[CLOCK].now())
    return await _form_page(request, form_values(record), {}, editing=editing)


@routes.post(f"/webhooks/{ID}/pause", name="dashboard.webhook_pause")
@routes.post(f"/webhooks/{ID}/resume", name="dashboard.webhook_resume")
async def pause_or_resume(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    pause = request.path.endswith("/pause")
    status = webhooks.WebhookStatus.PAUSED if pause else webhooks.WebhookStatus.ACTIVE
    available = request.app[AVAILABLE_TYPES]
    async with request.app[POOL].acquire() as conn:
        await webhooks.update_webhook(
            conn,
            request.app[REDIS],
            user,
            webhook_id,
            webhooks.WebhookInput(status=status.value),
            available,
        )
    return see_other(f"/webhooks/{webhook_id}?done={'paused' if pause else 'resumed'}")


@routes.post(f"/webhooks/{ID}/test", name="dashboard.webhook_test")
async def send_test(request: web.Request) -> web.Response:
    """A marked test alert on every channel, as POST /api/webhooks/<id>/test (a responder may)."""
    record = await _record_for(request, Role.RESPONDER)
    await webhooks.send_test(request.app[REDIS], record, request_id=request[REQUEST_ID])
    return see_other(f"/webhooks/{record['id']}?done=tested#last-test")


@routes.get(f"/webhooks/{ID}/delete", name="dashboard.webhook_delete")
async def delete_page(request: web.Request) -> web.Response:
    """Asks first, naming the webhook and what goes with it."""
    record = await _record_for(request, Role.ADMIN)
    context = {"section": "webhooks", "webhook": views.webhook_row(record, request.app[CLOCK].now())}
    return render(request, "webhook_delete.html", context)


@routes.post(f"/webhooks/{ID}/delete", name="dashboard.webhook_delete")
async def delete_webhook(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await webhooks.delete_webhook(conn, request.app[REDIS], user.id, webhook_id)
    return see_other("/webhooks?deleted=1")


@routes.post(f"/webhooks/{ID}/heartbeats", name="dashboard.heartbeats")
async def create_heartbeat(request: web.Request) -> web.Response:
    """The heartbeat form on this page (POST /api/webhooks/<id>/heartbeats); its error at its field."""
    webhook_id = webhooks.parse_id(request.match_info["id"])
    made, errors = await heartbeats.create_from_form(request, webhook_id)
    if made is None:
        return await _detail_page(request, await form(request), errors, status=400)
    return see_other(f"/webhooks/{webhook_id}?done=heartbeat#heartbeat-{made}")
