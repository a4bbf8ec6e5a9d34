"""Voice calls through a Twilio-compatible Calls API: the alert is read out with TwiML ``<Say>``."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

import aiohttp

from engine.channels.base import Message, Receipt
from engine.channels.sms import truncate
from engine.channels.twilio import TwilioClient
from engine.settings import TwilioSettings

# Spoken text is slow: keep the call short enough that the callee hears it twice before hanging up.
MAX_SPOKEN_BODY = 300
# Characters XML 1.0 forbids (and newlines, which mean nothing when spoken): invalid TwiML would be
# refused with a 4xx, turning one odd byte in an alert into a failed page.
_UNSPEAKABLE = re.compile(r"[\x00-\x1f\x7f\ufffe\uffff\ud800-\udfff]+")


class CallChannel:
    """Calls an E.164 number and reads the alert, twice."""

    type = "CALL"

    def __init__(self, settings: TwilioSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.client = TwilioClient(settings, session, timeout)

    async def send(self, message: Message, target: str) -> Receipt:
        """Create one Twilio Call; the receipt holds its sid."""
        sid = await self.client.create_call(target, render(message))
        return Receipt(provider_id=sid)


def render(message: Message) -> str:
    """The TwiML document for one alert: said, a pause, said again."""
    kind = "test alert" if message.is_test else "alert"
    parts = [
        f"Monoduty {kind} from {message.webhook_name}.",
        f"Severity {message.severity}.",
        f"{message.title.strip().rstrip('.')}.",
        truncate(message.body.strip(), MAX_SPOKEN_BODY),
    ]
    said = escape(" ".join(_UNSPEAKABLE.sub(" ", p).strip() for p in parts if p.strip()))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response><Say>{said}</Say><Pause length="1"/><Say>Again: {said}</Say></Response>'
    )
