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

from api.follow_ups import queue_follow_ups
from api.state import CLOCK, POOL
from api.twilio_requests import signed_form
from engine.incidents import sms_replies

routes = web.RouteTableDef()

PATH = "/twilio/sms"
TWIML = "text/xml"


def twiml(text: str | None) -> web.Response:
    body = f"<Message>{escape(text)}</Message>" if text else ""
    return web.Response(
        text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', content_type=TWIML
    )


@routes.post(PATH)
async def receive_sms(request: web.Request) -> web.Response:
    form = await signed_form(request)
    async with request.app[POOL].acquire() as conn:
        now = request.app[CLOCK].now()
        answer = await sms_replies.receive(conn, form.get("From", ""), form.get("Body", ""), now)
    await queue_follow_ups(request, answer.outcome)  # RESOLVED notices, once the resolve has committed
    return twiml(answer.text)
