"""``POST /twilio/voice/<token>``: Twilio asks what a page's phone call does next, with the key
pressed (engine.incidents.call_keys decides, engine.channels.call's menu posts here).

Nothing is read before the request's X-Twilio-Signature checks out (403, nothing changed), then
the token's grant (403 ACTION_LINK_INVALID when forged or expired). The answer is TwiML. The
token is in the path: request logs name the route pattern only.
"""

from __future__ import annotations

from aiohttp import web

from api.follow_ups import queue_follow_ups
from api.state import CLOCK, POOL, SETTINGS
from api.twilio_requests import signed_form
from engine.channels.call import VOICE_ROUTE, Stage
from engine.errors import ValidationError
from engine.incidents import call_keys, channel_actions

routes = web.RouteTableDef()
# What engine.incidents.channel_actions makes (payload.signature); any other path is not found.
TOKEN = r"{token:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+}"  # noqa: S105 - a route pattern
# Twilio's parameter names -> KeyPress's.
NAMES = {"CallSid": "call_sid", "Digits": "digits", "AnsweredBy": "answered_by"}
MAX_SID = 64  # Twilio's are 34 characters


@routes.post(f"{VOICE_ROUTE}{TOKEN}")
async def call_answer(request: web.Request) -> web.Response:
    form = await signed_form(request)
    settings, clock = request.app[SETTINGS], request.app[CLOCK]
    token = request.match_info["token"]
    now = clock.now()
    grant = channel_actions.redeem(settings.secret_key, token, now)
    given = {python: form.get(wire) for wire, python in NAMES.items()}
    call_sid = given["call_sid"]
    if not call_sid or len(call_sid) > MAX_SID:
        raise ValidationError(f"CallSid is required (at most {MAX_SID} characters)", field="CallSid")
    try:
        stage = Stage(request.query.get("stage", Stage.MENU.value))
    except ValueError:
        raise ValidationError(f"stage must be one of {', '.join(Stage)}", field="stage") from None
    press = call_keys.KeyPress(call_sid, given["digits"] or "", stage, given["answered_by"])
    assert settings.public_url is not None  # signed_form: no Twilio request without one
    async with request.app[POOL].acquire() as conn:
        answer = await call_keys.answer(conn, grant, press, settings.public_url, token, now)
    if answer.outcome is not None:
        await queue_follow_ups(request, answer.outcome)
    return web.Response(text=answer.twiml, content_type="text/xml")
