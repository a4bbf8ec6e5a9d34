"""Handlers for /api/me/contact-methods and /api/me/notification-rules: the caller's own ways of
being paged (engine/oncall/). Answers are camelCase (contactMethodId, delayMinutes, verifiedAt)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from api.auth import current_user
from api.inputs import json_body
from api.responses import ok
from api.state import POOL, SETTINGS
from engine import validate
from engine.channels.base import Channel
from engine.channels.outbox import OutboxChannel
from engine.channels.registry import build_channels
from engine.oncall import contacts, notification_rules, verification
from engine.oncall.contacts import ContactMethod
from engine.oncall.notification_rules import NotificationRule

# The channels that send verification codes, with their own outbound HTTP session (the API sends
# a code itself, so the user hears at once whether the number took it).
CHANNELS = web.AppKey("verification_channels", dict[str, Channel])
HTTP_SESSION = web.AppKey("verification_http_session", aiohttp.ClientSession)

routes = web.RouteTableDef()


def _now() -> datetime:
    return datetime.now(UTC)


@routes.get("/api/me/contact-methods")
async def list_methods(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        methods = await contacts.list_methods(conn, user.id)
    return ok(contactMethods=[method_to_api(m) for m in methods])


@routes.post("/api/me/contact-methods")
async def create_method(request: web.Request) -> web.Response:
    user = current_user(request)
    body = await json_body(request)
    async with request.app[POOL].acquire() as conn:
        method = await contacts.create_method(conn, user.id, body, now=_now())
    return ok(201, contactMethod=method_to_api(method))


@routes.patch("/api/me/contact-methods/{id}")
async def update_method(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    body = await json_body(request)
    async with request.app[POOL].acquire() as conn:
        method = await contacts.update_method(conn, user.id, method_id, body, now=_now())
    return ok(contactMethod=method_to_api(method))


@routes.delete("/api/me/contact-methods/{id}")
async def delete_method(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await contacts.delete_method(conn, user.id, method_id)
    return ok(deleted=str(method_id))


@routes.post("/api/me/contact-methods/{id}/send-code")
async def send_code(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    channels = request.app[CHANNELS]
    async with request.app[POOL].acquire() as conn:
        sent = await verification.send_verification(conn, user.id, method_id, channels, now=_now())
    return ok(
        verification={"sentAt": sent.sent_at, "expiresAt": sent.expires_at, "triesLeft": sent.tries_left}
    )


@routes.post("/api/me/contact-methods/{id}/verify")
async def verify(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    body = validate.require_object(await json_body(request))
    validate.only_known(body, {"code"})
    async with request.app[POOL].acquire() as conn:
        method = await verification.verify(conn, user.id, method_id, body.get("code"), now=_now())
    return ok(contactMethod=method_to_api(method))


@routes.get("/api/me/notification-rules")
async def list_rules(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        rules = await notification_rules.list_rules(conn, user.id)
    return ok(notificationRules=[rule_to_api(r) for r in rules])


@routes.post("/api/me/notification-rules")
async def create_rule(request: web.Request) -> web.Response:
    user = current_user(request)
    body = await json_body(request)
    async with request.app[POOL].acquire() as conn:
        rule = await notification_rules.create_rule(conn, user.id, body, now=_now())
    return ok(201, notificationRule=rule_to_api(rule))


@routes.delete("/api/me/notification-rules/{id}")
async def delete_rule(request: web.Request) -> web.Response:
    user = current_user(request)
    rule_id = notification_rules.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await notification_rules.delete_rule(conn, user.id, rule_id)
    return ok(deleted=str(rule_id))


def method_to_api(method: ContactMethod) -> dict[str, Any]:
    return {
        "id": str(method.id),
        "type": method.type,
        "target": method.target,
        "verified": method.verified_at is not None,
        "verifiedAt": method.verified_at,
        "needsVerification": method.needs_verification,
        "createdAt": method.created_at,
    }


def rule_to_api(rule: NotificationRule) -> dict[str, Any]:
    return {
        "id": str(rule.id),
        "contactMethodId": str(rule.contact_method_id),
        "delayMinutes": rule.delay_minutes,
        "type": rule.type,
        "target": rule.target,
        "createdAt": rule.created_at,
    }


async def _channels(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with aiohttp.ClientSession() as session:
        app[HTTP_SESSION] = session
        app[CHANNELS] = build_channels(
            settings, session, outbox_factory=lambda kind: OutboxChannel(kind, app[POOL])
        )
        yield


def setup(app: web.Application) -> None:
    """The routes, and the channels that send codes (after the pool: the dev outbox needs it)."""
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_channels)
