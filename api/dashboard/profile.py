"""The profile page: the caller's contact methods (with phone verification) and notification
rules, time zone, quiet hours, calendar link, password, web sessions and API keys.

Each form posts to its own route, which calls what the JSON API's handler calls (engine.oncall
contacts, notification_rules, verification, quiet_hours; engine.oncall.feeds; engine.auth
accounts, sessions, api_keys) and goes back to the page (``?done=`` picks a fixed message:
nothing the form sent is echoed). An engine error is shown in the form's section, the page
rendered again with it. A new API key's secret is on the answer to its form only: it is never
stored, so never shown again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api.auth import current_session, current_user
from api.contact_methods import CHANNELS
from api.dashboard import quiet_hours as quiet_form
from api.dashboard import views
from api.dashboard.field_errors import at_field
from api.dashboard.render import form, render, see_other
from api.dashboard.zones import COOKIE as ZONE_COOKIE
from api.dashboard.zones import zone_or_none
from api.feeds import feed_url
from api.inputs import query
from api.state import AVAILABLE_TYPES, CLOCK, POOL, REDIS, SETTINGS
from engine.auth import accounts, api_keys, sessions
from engine.channels.registry import CHANNEL_TYPES
from engine.errors import MonodutyError, ValidationError
from engine.oncall import contacts, feeds, notification_rules, quiet_hours, verification
from engine.oncall.contacts import ContactMethodInput
from engine.oncall.feeds import Feed, FeedKind
from engine.oncall.notification_rules import RuleInput
from engine.validate import UNSET

routes = web.RouteTableDef()
ID = "{id:[0-9a-fA-F-]{36}}"
MAX_KEYS_SHOWN = 100
TARGET_HINTS = {
    "EMAIL": "an email address",
    "SMS": "a mobile number in international format, +14155550123",
    "CALL": "a phone number in international format, +14155550123",
    "PUSH_NOTIF": "an ntfy topic",
}
# ?done= after a form that worked -> what the page says.
DONE = {
    "method-added": "Contact method added.",
    "method-deleted": "Contact method deleted, with its notification rules.",
    "code-sent": "A code is on its way. Enter it below within 10 minutes.",
    "verified": "Number verified: it is paged from now on.",
    "rule-added": "Notification rule added.",
    "rule-deleted": "Notification rule deleted.",
    "zone-set": "Time zone saved: the pages show times in it.",
    "zone-cleared": "Time zone cleared: the pages show times in your browser's.",
    "quiet-set": "Quiet hours saved.",
    "quiet-removed": "Quiet hours removed: anything they held back pages you now.",
    "feed-rotated": "New calendar link made. The old one no longer works: update your calendar app.",
    "password-set": "Password saved. Your other sessions were signed out.",
    "session-ended": "That session is signed out.",
    "key-revoked": "API key revoked: requests made with it are refused from now on.",
}
# The engine's names for fields -> the form's words for them, in its messages.
FIELD_WORDS = {
    "current_password": "Current password",
    "new_password": "New password",
    "delay_minutes": "Delay",
    "contact_method_id": "Contact method",
    "target": "Target",
    "type": "Type",
    "code": "Code",
    "name": "Name",
    "time_zone": "Time zone",
}
_FIELD = re.compile(r"^(\w+)")


def _words(exc: MonodutyError) -> str:
    """The engine's message with its field named as the form names it."""
    message = exc.message
    head = _FIELD.match(message)
    if head and head.group(1) in FIELD_WORDS:
        message = FIELD_WORDS[head.group(1)] + message[len(head.group(1)) :]
    return message[:1].upper() + message[1:]


def _when(moment: datetime | float | None, now: datetime) -> str:
    if moment is None:
        return ""
    if isinstance(moment, float):
        moment = datetime.fromtimestamp(moment, UTC)
    return views.ago(moment, now)


async def _page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    new_key: dict[str, str] | None = None,
    quiet_typed: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    user = current_user(request)
    settings = request.app[SETTINGS]
    now = request.app[CLOCK].now()
    async with request.app[POOL].acquire() as conn:
        methods = await contacts.list_methods(conn, user.id)
        rules = await notification_rules.list_rules(conn, user.id)
        keys, key_count = await api_keys.list_keys(conn, user.id, MAX_KEYS_SHOWN, 0)
        has_password = await accounts.has_password(conn, user.id)
        feed_version = await feeds.user_feed_version(conn, user.id)
        quiet = await quiet_hours.get(conn, user.id)
    live = await sessions.list_sessions(
        request.app[REDIS], user.id, settings.session_ttl, current=current_session(request)
    )
    by_id = {m.id: m for m in methods}
    done = query(request, "done").get("done", "")
    context: dict[str, Any] = {
        "section": "profile",
        "done": DONE.get(done, ""),
        "errors": errors or {},
        "methods": [
            {
                "id": str(m.id),
                "type": m.type,
                "type_label": views.CHANNEL_LABELS.get(m.type, m.type),
                "target": m.target,
                "verified": m.verified_at is not None,
                "needs_verification": m.needs_verification,
                "opted_out": m.opted_out_at is not None,
                "can_send_code": m.needs_verification and m.type in request.app[CHANNELS],
                "rule_count": sum(1 for r in rules if r.contact_method_id == m.id),
            }
            for m in methods
        ],
        "types": [
            {"value": t, "label": views.CHANNEL_LABELS.get(t, t), "hint": TARGET_HINTS.get(t, "")}
            for t in CHANNEL_TYPES
        ],
        "rules": [
            {
                "id": str(r.id),
                "delay": r.delay_minutes,
                "method": f"{views.CHANNEL_LABELS.get(r.type, r.type)} to {r.target}",
                "paged": not by_id[r.contact_method_id].needs_verification
                if r.contact_method_id in by_id
                else True,
            }
            for r in rules
        ],
        "feed_url": feed_url(request, Feed(FeedKind.USER, user.id, feed_version)),
        "has_password": has_password,
        "sessions": [
            {
                "id": s.id,
                "created": views.clock_time(datetime.fromtimestamp(s.created, UTC)),
                "last_used": _when(s.last_used, now),
                "current": s.current,
                "client": views.client_name(s.client),
                "user_agent": s.client,
            }
            for s in live
        ],
        "keys": [
            {
                "id": str(k["id"]),
                "name": k["name"],
                "prefix": k["prefix"],
                "created": views.clock_time(k["created_at"]),
                "last_used": _when(k["last_used_at"], now) or "never",
            }
            for k in keys
        ],
        "key_count": key_count,
        "new_key": new_key,
        "values": {},
        "time_zone": user.time_zone,
        "browser_zone": str(zone_or_none(request.cookies.get(ZONE_COOKIE)) or ""),
        **quiet_form.section(request, quiet, now, quiet_typed),
    }
    return render(request, "profile.html", context, status=status)


def _failed(request: web.Request, part: str, exc: MonodutyError) -> Any:
    return _page(request, errors={part: _words(exc)}, status=exc.status)


def _back(done: str, part: str) -> web.Response:
    return see_other(f"/profile?done={done}#{part}")


@routes.get("/profile", name="dashboard.profile")
async def profile_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/profile/contact-methods", name="dashboard.contact_method_add")
async def add_method(request: web.Request) -> web.Response:
    user = current_user(request)
    given = await form(request)
    wanted = ContactMethodInput(type=given.get("type", ""), target=given.get("target", "").strip())
    available = request.app[AVAILABLE_TYPES]
    try:
        async with request.app[POOL].acquire() as conn:
            await contacts.create_method(
                conn, user.id, wanted, now=request.app[CLOCK].now(), available=available
            )
    except MonodutyError as exc:
        return await _failed(request, "methods", exc)
    return _back("method-added", "methods")


@routes.post(f"/profile/contact-methods/{ID}/delete", name="dashboard.contact_method_delete")
async def delete_method(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await contacts.delete_method(conn, user.id, method_id)
    return _back("method-deleted", "methods")


@routes.post(f"/profile/contact-methods/{ID}/send-code", name="dashboard.contact_method_send_code")
async def send_code(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    channels = request.app[CHANNELS]
    try:
        async with request.app[POOL].acquire() as conn:
            await verification.send_verification(
                conn, user.id, method_id, channels, now=request.app[CLOCK].now()
            )
    except MonodutyError as exc:
        return await _failed(request, f"method-{method_id}", exc)
    return see_other(f"/profile?done=code-sent#method-{method_id}")


@routes.post(f"/profile/contact-methods/{ID}/verify", name="dashboard.contact_method_verify")
async def verify(request: web.Request) -> web.Response:
    user = current_user(request)
    method_id = contacts.parse_id(request.match_info["id"])
    code = (await form(request)).get("code", "")
    try:
        async with request.app[POOL].acquire() as conn:
            await verification.verify(conn, user.id, method_id, code, now=request.app[CLOCK].now())
    except MonodutyError as exc:
        return await _failed(request, f"method-{method_id}", exc)
    return see_other(f"/profile?done=verified#method-{method_id}")


@routes.post("/profile/notification-rules", name="dashboard.notification_rule_add")
async def add_rule(request: web.Request) -> web.Response:
    user = current_user(request)
    given = await form(request)
    delay = given.get("delay", "").strip()
    wanted = RuleInput(
        contact_method_id=given.get("method", ""),
        delay_minutes=int(delay) if delay.isdigit() and len(delay) < 6 else delay,
    )
    try:
        async with request.app[POOL].acquire() as conn:
            await notification_rules.create_rule(conn, user.id, wanted, now=request.app[CLOCK].now())
    except MonodutyError as exc:
        return await _failed(request, "rules", exc)
    return _back("rule-added", "rules")


@routes.post(f"/profile/notification-rules/{ID}/delete", name="dashboard.notification_rule_delete")
async def delete_rule(request: web.Request) -> web.Response:
    user = current_user(request)
    rule_id = notification_rules.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await notification_rules.delete_rule(conn, user.id, rule_id)
    return _back("rule-deleted", "rules")


@routes.post("/profile/time-zone", name="dashboard.time_zone_set")
async def set_time_zone(request: web.Request) -> web.Response:
    """Save the zone the pages show times in, as ``PATCH /api/auth/me`` with ``timeZone`` does;
    "use my browser's" (an empty value) clears it."""
    user = current_user(request)
    chosen = (await form(request)).get("time_zone", "").strip()
    change = accounts.ProfileChange(time_zone=chosen or None)
    try:
        async with request.app[POOL].acquire() as conn:
            await accounts.update_profile(conn, request.app[REDIS], user, change)
    except ValidationError as exc:
        return await _page(request, errors={"time_zone": _words(exc)}, status=exc.status)
    return _back("zone-set" if chosen else "zone-cleared", "time-zone")


@routes.post("/profile/quiet-hours", name="dashboard.quiet_hours_set")
async def set_quiet_hours(request: web.Request) -> web.Response:
    """Set or change them (the form sends every field), as ``PUT /api/me/quiet-hours`` does."""
    user = current_user(request)
    given = await form(request)
    try:
        async with request.app[POOL].acquire() as conn:
            await quiet_hours.put(conn, user.id, quiet_form.wanted(given), request.app[CLOCK].now())
    except ValidationError as exc:
        field, message = at_field(exc, quiet_form.FIELDS)
        typed = {name: given.get(name, "") for name, _ in quiet_form.FIELDS.values()}
        errors = {field or "quiet": message[:1].upper() + message[1:]}
        return await _page(request, errors=errors, quiet_typed=typed, status=exc.status)
    return _back("quiet-set", "quiet-hours")


@routes.post("/profile/quiet-hours/delete", name="dashboard.quiet_hours_delete")
async def remove_quiet_hours(request: web.Request) -> web.Response:
    """No more quiet hours (``DELETE /api/me/quiet-hours``): what they held pages now."""
    user = current_user(request)
    try:
        async with request.app[POOL].acquire() as conn:
            await quiet_hours.delete(conn, user.id, request.app[CLOCK].now())
    except MonodutyError as exc:  # removed meanwhile, in another tab
        return await _failed(request, "quiet", exc)
    return _back("quiet-removed", "quiet-hours")


@routes.post("/profile/calendar/rotate", name="dashboard.calendar_rotate")
async def rotate_feed(request: web.Request) -> web.Response:
    user = current_user(request)
    if request.app[SETTINGS].secret_key is None:
        raise feeds.no_secret_key()
    async with request.app[POOL].acquire() as conn:
        await feeds.rotate_user_feed(conn, user.id)
    return _back("feed-rotated", "calendar")


@routes.post("/profile/password", name="dashboard.password")
async def set_password(request: web.Request) -> web.Response:
    """Set a first password or change it (the current one asked for when there is one); every
    other session of the user ends, as ``POST /api/auth/password`` does."""
    user = current_user(request)
    given = await form(request)
    change = accounts.PasswordChange(
        current_password=given.get("current_password", UNSET),
        new_password=given.get("new_password", ""),
    )
    if given.get("new_password", "") != given.get("confirm_password", ""):
        return await _page(request, errors={"password": "The two new passwords differ."}, status=400)
    try:
        async with request.app[POOL].acquire() as conn:
            await accounts.change_password(
                conn, request.app[REDIS], user, change, keep=current_session(request)
            )
    except MonodutyError as exc:
        return await _failed(request, "password", exc)
    return _back("password-set", "password")


@routes.post("/profile/sessions/{session}/end", name="dashboard.session_end")
async def end_session(request: web.Request) -> web.Response:
    """Sign out one of the caller's sessions; one not theirs (or gone) is simply not there."""
    user = current_user(request)
    await sessions.end_one(request.app[REDIS], user.id, request.match_info["session"])
    return _back("session-ended", "sessions")


@routes.post("/profile/api-keys", name="dashboard.api_key_add")
async def add_key(request: web.Request) -> web.Response:
    user = current_user(request)
    name = (await form(request)).get("name", "")
    try:
        async with request.app[POOL].acquire() as conn:
            secret, record = await api_keys.new_key(conn, user.id, name)
    except MonodutyError as exc:
        return await _failed(request, "keys", exc)
    return await _page(request, new_key={"name": record["name"], "secret": secret}, status=201)


@routes.post(f"/profile/api-keys/{ID}/revoke", name="dashboard.api_key_revoke")
async def revoke_key(request: web.Request) -> web.Response:
    user = current_user(request)
    key_id = api_keys.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await api_keys.revoke(conn, request.app[REDIS], user.id, key_id)
    return _back("key-revoked", "keys")
