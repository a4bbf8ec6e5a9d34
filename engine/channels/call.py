"""Voice calls through a Twilio-compatible Calls API: the alert is read out with TwiML ``<Say>``,
then, when the message has action links, a menu of keys (the digits PagerDuty and GoAlert use)::

    <Say>the alert</Say>
    <Gather numDigits="1" timeout="10" action="<public url>/twilio/voice/<token>" method="POST">
        <Say>Press 4 to acknowledge, 6 to resolve, 5 to escalate, 1 to repeat.</Say></Gather>
    <Redirect method="POST">the same URL</Redirect>

A key pressed is posted to the action URL (api/twilio_voice.py answers it with the TwiML made
here). No key within 10 s: Twilio goes on to the ``<Redirect>`` and asks the same URL without
``Digits``, so that one place decides what silence means (once more, then hang up).

With machine detection on (MONODUTY_TWILIO_MACHINE_DETECTION), a call with a menu starts from
that URL instead (``?stage=answered``): Twilio requests it once it knows who answered, naming it
in ``AnsweredBy``, and a voicemail or fax is hung up on before it hears anything. Inline TwiML
would play to whoever picked up, and Twilio would tell no one.
"""

from __future__ import annotations

import re
from enum import StrEnum
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

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

VOICE_ROUTE = "/twilio/voice/"  # api/twilio_voice.py serves it
MENU = "Press 4 to acknowledge, 6 to resolve, 5 to escalate, 1 to repeat."
GATHER_SECONDS = 10


class Stage(StrEnum):
    """Where in the call a request to the voice URL comes from (its ``stage`` query parameter)."""

    MENU = "menu"  # the first menu's key, or its silence (no ``stage`` in the URL)
    RETRY = "retry"  # the menu asked again after a key not understood: the last chance
    ANSWERED = "answered"  # the call was answered (machine detection on): say the alert


class CallChannel:
    """Calls an E.164 number and says the alert's severity and title, then offers the menu when
    the message has action links and the server a public URL to take the key pressed at."""

    type = "CALL"

    def __init__(
        self,
        settings: TwilioSettings,
        session: aiohttp.ClientSession,
        timeout: float,
        public_url: str | None = None,
    ) -> None:
        self.client = TwilioClient(settings, session, timeout)
        self.public_url = public_url

    async def send(self, message: Message, target: str) -> Receipt:
        """Create one Twilio Call; the receipt holds its sid."""
        receipts = message.status_callback
        if message.actions is None or self.public_url is None:
            sid = await self.client.create_call(target, twiml=render(message), status_callback=receipts)
        elif self.client.settings.machine_detection:
            answered = voice_url(self.public_url, message.actions.token, Stage.ANSWERED)
            sid = await self.client.create_call(target, url=answered, status_callback=receipts)
        else:
            menu_url = voice_url(self.public_url, message.actions.token)
            sid = await self.client.create_call(
                target, twiml=render(message, menu_url), status_callback=receipts
            )
        return Receipt(provider_id=sid)


def voice_url(public_url: str, token: str, stage: Stage = Stage.MENU) -> str:
    """The URL Twilio posts a call's key to (and asks for what to say next)."""
    url = f"{public_url.rstrip('/')}{VOICE_ROUTE}{quote(token, safe='')}"
    return url if stage is Stage.MENU else f"{url}?stage={stage.value}"


def render(message: Message, menu_url: str | None = None) -> str:
    """The TwiML document for one alert: who it is from, then its severity and title, said once;
    then the menu of keys, posting to ``menu_url``, when given.

    Nothing else is read out: a message body is label lists, URLs and log lines, which a voice
    turns into noise. The pause lets the callee get the phone to their ear before the title.
    """
    kind = "test alert" if message.is_test else "alert"
    intro = f"Monoduty {kind} from {_speakable(message.webhook_name)}."
    said = f"Severity {message.severity}. {spoken_title(message.title)}."
    alert = f'<Say>{escape(intro)}</Say><Pause length="1"/><Say>{escape(said)}</Say>'
    return _document(alert + (menu(menu_url) if menu_url is not None else ""))


def menu(url: str) -> str:
    """The menu, and what follows when no key is pressed: ask ``url`` without ``Digits``."""
    return (
        f'<Gather numDigits="1" timeout="{GATHER_SECONDS}" action={quoteattr(url)} method="POST">'
        f"<Say>{escape(MENU)}</Say></Gather>"
        f'<Redirect method="POST">{escape(url)}</Redirect>'
    )


def again(text: str, url: str) -> str:
    """Say ``text``, then offer the menu once more, posting to ``url``."""
    return _document(f"<Say>{escape(text)}</Say>{menu(url)}")


def hang_up(text: str | None = None) -> str:
    """Say ``text`` (if any), then end the call."""
    said = f"<Say>{escape(text)}</Say>" if text else ""
    return _document(f"{said}<Hangup/>")


def _document(verbs: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{verbs}</Response>'


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
