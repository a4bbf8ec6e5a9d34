"""SMS through a Twilio-compatible Messages API."""

from __future__ import annotations

import aiohttp

from engine.channels.base import Message, Receipt
from engine.channels.twilio import TwilioClient
from engine.settings import TwilioSettings

# Twilio refuses a Body longer than 1600 characters (error 21617) rather than splitting it.
MAX_BODY = 1600


class SmsChannel:
    """Texts the alert's subject line and message to an E.164 number."""

    type = "SMS"

    def __init__(self, settings: TwilioSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.client = TwilioClient(settings, session, timeout)

    async def send(self, message: Message, target: str) -> Receipt:
        """Create one Twilio Message; the receipt holds its sid."""
        sid = await self.client.create_message(target, render(message))
        return Receipt(provider_id=sid)


def render(message: Message) -> str:
    """``[CRITICAL] DB down`` then the message, cut to fit one Twilio Message."""
    text = message.subject
    if message.body.strip():
        text += "\n" + message.body.strip()
    return truncate(text, MAX_BODY)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` UTF-16 code units (how Twilio counts), marking the cut with an ellipsis."""
    if _units(text) <= limit:
        return text
    kept = []
    used = 1  # room for the ellipsis
    for char in text:
        used += _units(char)
        if used > limit:
            break
        kept.append(char)
    return "".join(kept).rstrip() + "…"


def _units(text: str) -> int:
    # Characters outside the Basic Multilingual Plane (emoji) count twice in UTF-16.
    return len(text.encode("utf-16-le")) // 2
