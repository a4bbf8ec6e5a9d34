"""Voice calls through a Twilio-compatible Calls API: the alert is read out with TwiML ``<Say>``."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

import aiohttp

from engine.channels.base import Message, Receipt
from engine.channels.sms import truncate
from engine.channels.twilio import TwilioClient
from engine.settings import TwilioSettings

# A title is at most 200 characters; said slowly, it is still under 20 seconds.
MAX_SPOKEN_TITLE = 200
# Alertmanager's and Grafana's ``[FIRING:3]`` / ``[RESOLVED]`` prefix.
_TAG = re.compile(r"\[(FIRING|RESOLVED|ALERTING|OK|TEST)(?::([\d,]+))?\]\s*", re.IGNORECASE)
# Read out as "underscore", "open bracket"... by most voices.
_SEPARATORS = re.compile(r"[_\[\]{}|*#`~^]+")
_UNSPEAKABLE = re.compile(r"[\x00-\x1f\x7f\ufffe\uffff\ud800-\udfff]+")


class CallChannel:
    """Calls an E.164 number and says the alert's severity and title."""

    type = "CALL"

    def __init__(self, settings: TwilioSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.client = TwilioClient(settings, session, timeout)

    async def send(self, message: Message, target: str) -> Receipt:
        """Create one Twilio Call; the receipt holds its sid."""
        sid = await self.client.create_call(target, render(message))
        return Receipt(provider_id=sid)


def render(message: Message) -> str:
    """The TwiML document for one alert: who it is from, then its severity and title, said once.

    Nothing else is read out: a message body is label lists, URLs and log lines, which a voice
    turns into noise. The pause lets the callee get the phone to their ear before the title.
    """
    kind = "test alert" if message.is_test else "alert"
    intro = f"Monoduty {kind} from {_speakable(message.webhook_name)}."
    said = f"Severity {message.severity}. {spoken_title(message.title)}."
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response><Say>{escape(intro)}</Say><Pause length="1"/><Say>{escape(said)}</Say></Response>'
    )


def spoken_title(title: str) -> str:
    """A title as a voice should say it: ``[FIRING:1000] Target is down`` becomes
    ``Firing, 1000 alerts: Target is down``; brackets and separators are not read out."""
    match = _TAG.match(title.strip())
    if match:
        state, count = match.group(1).capitalize(), match.group(2)
        lead = f"{state}, {count} alerts: " if count else f"{state}: "
        title = lead + title.strip()[match.end() :]
    return truncate(_speakable(title).rstrip("."), MAX_SPOKEN_TITLE)


def _speakable(text: str) -> str:
    return " ".join(_SEPARATORS.sub(" ", _UNSPEAKABLE.sub(" ", text)).split())
