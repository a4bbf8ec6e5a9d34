"""Handlers for /api/webhooks: parse, call the engine, answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, query, wire_names
from api.responses import ok
from api.state import AVAILABLE_TYPES, CLOCK, POOL, REDIS, REQUEST_ID, SETTINGS, public_url
from engine import db, limits, webhooks
from engine.channels import webhook as outbound
from engine.channels.registry import shown_targets
from engine.maintenance import holds
from engine.teams import Role
from engine.validate import UNSET

routes = web.RouteTableDef()

# The request body's fields: wire name -> the engine's (engine.webhooks.WebhookInput).
NAMES = {
    "name": "name",
    "description": "description",
    "alias": "alias",
    "notificationTypes": "notification_types",
    "targetChannels": "target_channels",
    "status": "status",
    "signingSecret": "signing_secret",
    "dedupBy": "dedup_by",
    "notifyOnResolve": "notify_on_resolve",
    "repageOnChange": "repage_on_change",
    "escalationPolicyId": "escalation_policy_id",
    "teamId": "team_id",
}


def webhook_input(body: object) -> webhooks.WebhookInput:
    return webhooks.WebhookInput(
        **fields(body, NAMES, text=("name", "description", "alias"), flags=("repageOnChange",))
    )


@routes.get("/api/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    user = current_user(request)
    limit, offset = limits.page(query(request, "limit", "offset"), default=limits.MAX_PAGE)
    async with request.app[POOL].acquire() as conn:
        records = await webhooks.list_webhooks(conn, user.id, limit=limit, offset=offset)
        total = await webhooks.count_webhooks(conn, user.id)
        shown = await with_maintenance(conn, request, records)
    base = public_url(request)
    return ok(webhooks=[to_api(r, base) for r in shown], total=total)


@routes.post("/api/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = webhook_input(await json_body(request))
    async with request.app[POOL].acquire() as conn:
        available = request.app[AVAILABLE_TYPES]
        with wire_names(NAMES):
            record = await webhooks.create_webhook(conn, user, wanted, available)
        [shown] = await with_maintenance(conn, request, [record])
    return ok(http_status=201, webhook=to_api(shown, public_url(request)), **_secrets(request, shown))


@routes.get("/api/webhooks/{id}")
async def get_webhook(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await webhooks.get_webhook(conn, user.id, webhook_id)
        last_test = await webhooks.last_test(conn, webhook_id)
        [shown] = await with_maintenance(conn, request, [record])
    return ok(webhook={**to_api(shown, public_url(request)), "last_test": last_test})


@routes.patch("/api/webhooks/{id}")
async def update_webhook(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    wanted = webhook_input(await json_body(request))
    async with request.app[POOL].acquire() as conn:
        available = request.app[AVAILABLE_TYPES]
        with wire_names(NAMES):
            record = await webhooks.update_webhook(
                conn, request.app[REDIS], user, webhook_id, wanted, available
            )
        [shown] = await with_maintenance(conn, request, [record])
    shown_secrets = _secrets(request, shown) if wanted.target_channels is not UNSET else {}
    return ok(webhook=to_api(shown, public_url(request)), **shown_secrets)


def _secrets(request: web.Request, record: Mapping[str, Any]) -> dict[str, Any]:
    """``signing_secrets`` of the WEBHOOK targets, for the answer that sets them (the one place
    their owner sees them: engine.channels.webhook derives them, nothing stores them)."""
    targets = record["targets"].get("webhook") if isinstance(record["targets"], dict) else None
    found = outbound.signing_secrets(request.app[SETTINGS].secret_key, record["user_id"], targets)
    return {"signing_secrets": found} if found else {}


@routes.delete("/api/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await webhooks.delete_webhook(conn, request.app[REDIS], user.id, webhook_id)
    return ok(deleted=str(webhook_id))


@routes.post("/api/webhooks/{id}/test")
async def test_webhook(request: web.Request) -> web.Response:
    """Send a marked test alert on every channel (a responder of its team may); the outcome shows
    as last_test on the webhook."""
    user = current_user(request)
    webhook_id = webhooks.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        record = await webhooks.get_webhook(conn, user.id, webhook_id, Role.RESPONDER)
    alert_id = await webhooks.send_test(request.app[REDIS], record, request_id=request[REQUEST_ID])
    return ok(http_status=202, alert_id=alert_id, status="queued", test=True)


async def with_maintenance(
    conn: db.Connection, request: web.Request, records: list[asyncpg.Record]
) -> list[dict[str, Any]]:
    """The records with ``in_maintenance_until``: the end of the maintenance window each is in now."""
    until = await holds.until_of(conn, [r["id"] for r in records], request.app[CLOCK].now())
    return [{**dict(r), "in_maintenance_until": until.get(r["id"])} for r in records]


def to_api(record: asyncpg.Record | Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """The webhook as the seed shows it (snake_case)."""
    return {
        "id": str(record["id"]),
        "team_id": str(record["team_id"]),
        "name": record["name"],
        "description": record["description"],
        "alias": record["alias"],
        "status": record["status"],
        "webhook_url": f"{public_url}/{record['token']}",
        "notification_types": list(record["notification_types"]),
        "target_channels": shown_targets(record["targets"]),  # an Apprise URL is a credential
        "signed": record["signed"],
        "statistics": {
            "total_calls": record["total_calls"],
            "successful_calls": record["successful_calls"],
            "failed_calls": record["failed_calls"],
            "pending_calls": record["pending_calls"],
            "incidents_open": record["incidents_open"],
        },
        "dedup_by": record["dedup_by"],
        "notify_on_resolve": list(record["notify_on_resolve"]),
        "repage_on_change": record["repage_on_change"],
        "escalation_policy_id": str(record["escalation_policy_id"])
        if record["escalation_policy_id"]
        else None,
        "in_maintenance_until": record.get("in_maintenance_until"),
        "last_call_at": record["last_call_at"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
    }
