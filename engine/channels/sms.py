"""SMS through a Twilio-compatible Messages API."""

from __future__ import annotations

import aiohttp

from engine.channels.base import Message, Receipt, ReplyCode
from engine.channels.twilio import TwilioClient
from engine.settings import TwilioSettings

# Twilio refuses a Body longer than 1600 characters (error 21617) rather than splitting it.
MAX_BODY = 1600
# One segment: 160 characters of the GSM 03.38 alphabet, or 70 UTF-16 code units otherwise (UCS-2).
# Longer texts are split into segments of 153 / 67, each billed and each a chance to arrive apart.
GSM7_SEGMENT = 160
UCS2_SEGMENT = 70
MIN_CUT_DETAIL = 12  # a cut detail shorter than this says nothing
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


class SmsChannel:
    """Texts the alert's subject line, and what of its detail fits one segment, to an E.164 number."""

    type = "SMS"

    def __init__(self, settings: TwilioSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.client = TwilioClient(settings, session, timeout)

    async def send(self, message: Message, target: str) -> Receipt:
        """Create one Twilio Message; the receipt holds its sid."""
        sid = await self.client.create_message(
            target, render(message), status_callback=message.status_callback
        )
        return Receipt(provider_id=sid)


def render(message: Message) -> str:
    """One SMS segment where it can: ``[CRITICAL] #42 DB down``, then detail only while it fits,
    then how to reply (``Reply 3a to ack, 3c to close``) when the page carries a reply code.

    The detail is the first link the sender gave, then the message's lines, each whole (the first
    one cut to the room left, so a label line such as ``cluster=prod ...`` still tells two pages
    apart). A subject longer than a segment is sent whole, without detail: cutting the title would
    lose what the page is about. The reply line is never cut: it is what a person acts with.
    """
    tail = f"\n{reply_line(message.reply)}" if message.reply is not None else ""
    text = message.subject
    details = [*message.links[:1], *(line.strip() for line in message.body.splitlines())]
    for index, line in enumerate(d for d in details if d):
        candidate = f"{text}\n{line}"
        if fits_one_segment(candidate + tail):
            text = candidate
            continue
        if index == 0:
            cut = _cut_to_segment(text, line, tail)
            text = f"{text}\n{cut}" if cut else text
        break
    sent = truncate(text, MAX_BODY - _units(tail)) + tail
    # Escalating is the rarer answer: said when it still fits the one segment, never at its cost.
    if message.reply is not None and fits_one_segment(sent + escalate_hint(message.reply)):
        sent += escalate_hint(message.reply)
    return sent


def reply_line(reply: ReplyCode) -> str:
    """How to act on the page by replying (engine.incidents.sms_replies reads it back)."""
    code, count = reply.code, reply.incidents
    if count > 1:
        return f"Reply {code}a to ack all {count}, {code}c to close all {count}"
    return f"Reply {code}a to ack, {code}c to close"


def escalate_hint(reply: ReplyCode) -> str:
    """The end of the reply line when there is room: ``, 3e to escalate`` (the next step now)."""
    return f", {reply.code}e to escalate"


def fits_one_segment(text: str) -> bool:
    """Does ``text`` travel as one SMS: 160 GSM-7 septets, or 70 UCS-2 code units when it is not GSM-7?"""
    septets = gsm7_length(text)
    if septets is not None:
        return septets <= GSM7_SEGMENT
    return _units(text) <= UCS2_SEGMENT


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in the GSM 03.38 alphabet (extension characters take two), or None
    when a character is outside it (the whole SMS is then sent as UCS-2)."""
    length = 0
    for char in text:
        if char in _GSM7_BASIC:
            length += 1
        elif char in _GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def _cut_to_segment(head: str, line: str, tail: str) -> str:
    """The longest start of ``line`` (marked as cut) that still fits one segment between ``head``
    and ``tail``, or "" when less than a few words would fit. "..." rather than "…": U+2026 is not GSM-7."""
    kept = ""
    for char in line:
        if not fits_one_segment(f"{head}\n{kept}{char}...{tail}"):
            break
        kept += char
    kept = kept.rstrip()
    return f"{kept}..." if len(kept) >= MIN_CUT_DETAIL else ""


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
