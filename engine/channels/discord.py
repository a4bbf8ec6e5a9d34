"""Discord webhooks: ``POST {webhook url}?wait=true`` with ``content`` and one embed.

The embed's colour follows the severity; its fields are the facts and a line of links (Discord's
masked links ``[label](url)``). ``allowed_mentions: {"parse": []}``: an alert titled "@everyone"
must not ping a whole server. ``wait=true`` makes Discord answer the created message (its id is
the receipt) instead of a bare 204.

Discord's errors are JSON ``{"message", "code"}`` (``404 Unknown Webhook`` code 10015, ``400``
code 50006 for an empty message, ``401``), and a rate limit is ``429`` with ``retry_after`` in
seconds in the body (and a Retry-After header): engine.channels.http reads both.
"""

from __future__ import annotations

import re

import aiohttp
from yarl import URL

from engine.channels import chat, http
from engine.channels.base import Message, Receipt

PROVIDER = "discord"
COLOURS = {"critical": 0xE01E5A, "error": 0xF2994A, "warning": 0xF2C744, "info": 0x3B82F6}
MAX_CONTENT = 2000
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELD = 1024
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()#-])")


def escape(text: str) -> str:
    """Discord markdown as literal text (a title's ``**`` or ``[x](y)`` shows as typed)."""
    return _MARKDOWN.sub(r"\\\1", text)


def masked_link(label: str, url: str) -> str:
    """``[label](url)``, the URL's brackets, parentheses and spaces percent-encoded (the same URL):
    a sender's link ``https://ok.example/)[x](https://evil.example`` must stay one link."""
    safe = url.translate({ord(c): f"%{ord(c):02X}" for c in "()[]<> "})
    return f"[{escape(label)}]({safe})"


def payload(message: Message) -> dict[str, object]:
    fields = [
        {"name": label, "value": escape(value)[:MAX_FIELD], "inline": True}
        for label, value in chat.facts(message)
    ]
    links = " · ".join(masked_link(label, url) for label, url in chat.links(message))
    if links:
        fields.append({"name": "Links", "value": links[:MAX_FIELD], "inline": False})
    embed: dict[str, object] = {
        "title": message.subject[:MAX_TITLE],
        "description": escape(chat.body(message))[:MAX_DESCRIPTION],
        "color": COLOURS.get(message.severity, COLOURS["info"]),
        "fields": fields,
        "timestamp": message.received_at.isoformat(),
    }
    if message.incident_url is not None:
        embed["url"] = message.incident_url
    return {
        "content": escape(message.subject)[:MAX_CONTENT],
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }


class DiscordChannel:
    """Posts the page to a Discord webhook URL."""

    type = "DISCORD"

    def __init__(self, _settings: object, session: aiohttp.ClientSession, timeout: float) -> None:
        self.session = session
        self.timeout = timeout

    async def send(self, message: Message, target: str) -> Receipt:
        url = str(URL(target).update_query(wait="true"))
        response = await http.post(
            self.session, url, provider=PROVIDER, payload=payload(message), timeout=self.timeout
        )
        message_id = response.json.get("id") if isinstance(response.json, dict) else None
        return Receipt(provider_id=message_id if isinstance(message_id, str) else None)
