"""Telegram through the Bot API: ``POST {base}/bot{token}/sendMessage`` with ``chat_id``, ``text``
and ``parse_mode=HTML``.

Every piece of the alert's text is HTML-escaped (Telegram refuses a message whose markup does not
parse: 400 "can't parse entities"); the links are ``<a href>`` in the text rather than inline
keyboard buttons, which Telegram refuses for URLs it deems invalid (a LAN public URL), failing
the whole page. The Bot API answers ``{"ok": true, "result": {"message_id"}}``, and its errors as
``{"ok": false, "error_code", "description"}`` with that status (400 "chat not found", 401, 403
"bot was blocked by the user", 429 with ``parameters.retry_after``): engine.channels.http reads
them; a 2xx whose ``ok`` is false is refused here, for good.

The bot token is in the URL's path; it never appears in an error (nor does the URL).
"""

from __future__ import annotations

import re
from html import escape

import aiohttp

from engine.channels import chat, http
from engine.channels.base import DeliveryError, Message, Receipt
from engine.channels.formats import TargetError
from engine.settings import TelegramSettings

PROVIDER = "telegram"
MAX_TEXT = 4096
ICONS = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
# A chat id (a user's or a group's, negative for groups and channels) or a public @channelname.
_CHAT_ID = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")


def validate_chat_id(value: object, *, field: str = "chat_id") -> str:
    """A numeric chat id (``-100...`` for supergroups and channels) or a public ``@channelname``."""
    if not isinstance(value, str):
        raise TargetError(field, "must be a string")
    chat_id = value.strip()
    if not _CHAT_ID.fullmatch(chat_id):
        raise TargetError(field, "must be a Telegram chat id like -1001234567890 or @channelname")
    return chat_id


def text(value: str) -> str:
    """The alert's text as Telegram HTML: escaped, and no @username that would notify someone."""
    return escape(chat.unmention(value), quote=False)


def render(message: Message) -> str:
    """The message as Telegram HTML: the headline bold, the text, the facts, the links."""
    headline = f"{ICONS.get(message.severity, '')} <b>{text(message.subject)}</b>".strip()
    lines = [headline]
    body = chat.body(message)
    if body:
        lines += ["", text(body)]
    facts = chat.facts(message)
    if facts:
        lines += ["", " · ".join(f"{label}: {text(value)}" for label, value in facts)]
    links = chat.links(message)
    if links:
        lines += ["", " · ".join(f'<a href="{escape(url)}">{escape(label)}</a>' for label, url in links)]
    rendered = "\n".join(lines)
    return rendered if len(rendered) <= MAX_TEXT else headline  # a cut could split a tag


class TelegramChannel:
    """Sends the page to a Telegram chat as the configured bot."""

    type = "TELEGRAM"

    def __init__(self, settings: TelegramSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.settings = settings
        self.session = session
        self.timeout = timeout

    async def send(self, message: Message, target: str) -> Receipt:
        response = await http.post(
            self.session,
            f"{self.settings.base_url}/bot{self.settings.bot_token}/sendMessage",
            provider=PROVIDER,
            payload={
                "chat_id": target,
                "text": render(message),
                "parse_mode": "HTML",
                "disable_web_page_preview": True,
            },
            secrets=(self.settings.bot_token,),
            timeout=self.timeout,
        )
        answer = response.json if isinstance(response.json, dict) else {}
        if answer.get("ok") is not True:
            description = str(answer.get("description") or "no ok in the answer")[:200]
            description = description.replace(self.settings.bot_token, "***")
            raise DeliveryError(f"{PROVIDER} answered {response.status}: {description}", permanent=True)
        result = answer.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return Receipt(provider_id=str(message_id) if message_id is not None else None)
