"""Handlers for /api/me/contact-methods and /api/me/notification-rules: the caller's own ways of
being paged (engine/oncall/). Requests take camelCase (contactMethodId, delayMinutes), answers
snake_case (contact_method_id, verified_at), as every route of the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_names
from api.responses import ok
from api.state import AVAILABLE_TYPES, CLOCK, POOL, SETTINGS
from engine.channels import egress
from engine.channels import webhook as outbound
from engine.channels.base import Channel
from engine.channels.outbox import OutboxChannel
from engine.channels.registry import build_channels, shown_target
from engine.oncall import contacts, notification_rules, verification
from engine.oncall.contacts import ContactMethod, ContactMethodInput
from engine.oncall.notification_rules import NotificationRule, RuleInput
from engine.validate import UNSET

# The channels that send verification codes, with their own outbound HTTP session (the API sends
# a code itself, so the user hears at once whether the number took it).
CHANNELS = web.AppKey("verification_channels", dict[str, Channel])
HTTP_SESSION = web.AppKey("verification_http_session", aiohttp.ClientSession)

# wire name -> the engine input's field
METHOD_NAMES = {"type": "type", "target": "target"}
RULE_NAMES = {"contactMethodId": "contact_method_id", "delayMinutes": "delay_minutes"}
CODE_NAMES = {"code": "code"}

routes = web.RouteTableDef()


@routes.get("/api/me/contact-methods")
async def list_methods(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        methods = await contacts.list_methods(conn, user.id)
    return ok(contact_methods=[method_to_api(m) for m in methods])


@routes.post("/api/me/contact-methods")
async def create_method(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = ContactMethodInput(**fields(await json_body(request), METHOD_NAMES))
    available = request.app[AVAILABLE_TYPES]
    async with request.app[POOL].acquire() as conn:
        method = await contacts.create_method(
            conn, user.id, wanted, now=request.app[CLOCK].now(), available=available
        )
    return ok(201, contact_method=method_to_api(method), **_secret(request, method))


@routes.patch("/api/me/contact-methods/{id}")
async def update_method(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    wanted = ContactMethodInput(**fields(await json_body(request), METHOD_NAMES))
    available = request.app[AVAILABLE_TYPES]
    async with request.app[POOL].acquire() as conn:
        method = await contacts.update_method(
            conn, user.id, method_id, wanted, now=request.app[CLOCK].now(), available=available
        )
    changed = _secret(request, method) if wanted.target is not UNSET else {}
    return ok(contact_method=method_to_api(method), **changed)


def _secret(request: web.Request, method: ContactMethod) -> dict[str, Any]:
    """A WEBHOOK method's ``signing_secret``, for the answer that sets its URL (engine.channels.webhook
    derives it from the user and the URL; nothing stores it)."""
    if method.type != outbound.WebhookChannel.type:
        return {}
    found = outbound.signing_secrets(request.app[SETTINGS].secret_key, method.user_id, [method.target])
    return {"signing_secret": found[method.target]} if found else {}


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
        sent = await verification.send_verification(
            conn, user.id, method_id, channels, now=request.app[CLOCK].now()
        )
    return ok(
        verification={"sent_at": sent.sent_at, "expires_at": sent.expires_at, "tries_left": sent.tries_left}
    )


@routes.post("/api/me/contact-methods/{id}/verify")
async def verify(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    given = fields(await json_body(request), CODE_NAMES)
    async with request.app[POOL].acquire() as conn:
        method = await verification.verify(
            conn, user.id, method_id, given.get("code"), now=request.app[CLOCK].now()
        )
    return ok(contact_method=method_to_api(method))


@routes.get("/api/me/notification-rules")
async def list_rules(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        rules = await notification_rules.list_rules(conn, user.id)
    return ok(notification_rules=[rule_to_api(r) for r in rules])


@routes.post("/api/me/notification-rules")
async def create_rule(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = RuleInput(**fields(await json_body(request), RULE_NAMES))
    async with request.app[POOL].acquire() as conn:
        with wire_names(RULE_NAMES):
            rule = await notification_rules.create_rule(conn, user.id, wanted, now=request.app[CLOCK].now())
    return ok(201, notification_rule=rule_to_api(rule))


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
        "target": shown_target(method.type, method.target),
        "verified": method.verified_at is not None,
        "verified_at": method.verified_at,
        "needs_verification": method.needs_verification,
        "opted_out_at": method.opted_out_at,
        "created_at": method.created_at,
    }


def rule_to_api(rule: NotificationRule) -> dict[str, Any]:
    return {
        "id": str(rule.id),
        "contact_method_id": str(rule.contact_method_id),
        "delay_minutes": rule.delay_minutes,
        "type": rule.type,
        "target": shown_target(rule.type, rule.target),
        "created_at": rule.created_at,
    }


async def _channels(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with egress.client_session(settings) as session:
        app[HTTP_SESSION] = session
        app[CHANNELS] = build_channels(
            settings, session, outbox_factory=lambda kind: OutboxChannel(kind, app[POOL])
        )
        yield


def setup(app: web.Application) -> None:
    """The routes, and the channels that send codes (after the pool: the dev outbox needs it)."""
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_channels)
