"""``POST /twilio/sms``: Twilio's incoming-message webhook, where replies to our SMS pages arrive.

Point the Twilio number's "A message comes in" webhook (HTTP POST) at
``MONODUTY_PUBLIC_URL/twilio/sms``. Twilio posts the text form-encoded (``From``, ``Body``, ...)
and signs it (engine.channels.twilio_signature) with the account's auth token over the URL it
requested, which is ours when it is MONODUTY_PUBLIC_URL + this path. A request whose
``X-Twilio-Signature`` does not match is refused with 403 in the seed's error format and changes
nothing; so is every request while Twilio is not configured. The answer is TwiML: ``<Message>``
with what happened, or an empty ``<Response/>`` (nothing to say). The access log names this
route's pattern only, never the number or the text.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from aiohttp import web

from api.state import CLOCK, POOL, REDIS, REQUEST_ID, SETTINGS, public_url
from engine import queue
from engine.channels import twilio_signature
from engine.errors import Forbidden
from engine.incidents import sms_replies
from engine.oncall import escalation

routes = web.RouteTableDef()

PATH = "/twilio/sms"
TWIML = "text/xml"


def signature_invalid() -> Forbidden:
    return Forbidden(
        f"missing or wrong {twilio_signature.HEADER}: not a request from our Twilio account",
        code="TWILIO_SIGNATURE_INVALID",
    )


async def verified_form(request: web.Request) -> dict[str, str]:
    """The form Twilio posted, once its signature holds (else 403, before anything is read into
    the engine). Twilio names each field once; a file part is nothing Twilio sends."""
    twilio = request.app[SETTINGS].twilio
    form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
    params = [(name, value) for name, value in form.items() if isinstance(value, str)]
    url = public_url(request).rstrip("/") + request.raw_path
    given = request.headers.get(twilio_signature.HEADER)
    if twilio is None or not twilio_signature.is_valid(twilio.auth_token, url, params, given):
        raise signature_invalid()
    return dict(params)


def twiml(text: str | None) -> web.Response:
    body = f"<Message>{escape(text)}</Message>" if text else ""
    return web.Response(
        text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', content_type=TWIML
    )


@routes.post(PATH)
async def receive_sms(request: web.Request) -> web.Response:
    form = await verified_form(request)
    clock = request.app[CLOCK]
    async with request.app[POOL].acquire() as conn:
        answer = await sms_replies.receive(conn, form.get("From", ""), form.get("Body", ""), clock.now())
    for delivery_id in answer.outcome.notices:  # RESOLVED notices, once the resolve has committed
        await queue.enqueue_delivery(request.app[REDIS], str(delivery_id), request_id=request[REQUEST_ID])
    await escalation.enqueue_wake_ups(request.app[REDIS], clock, answer.outcome.wake_ups)
    return twiml(answer.text)
