"""Push notifications through ntfy's publish API: ``POST {url}/{topic}``, the message as the body."""

from __future__ import annotations

import base64
import re
import string
from urllib.parse import quote

import aiohttp

from engine.channels import http
from engine.channels.base import ActionLinks, Message, Receipt
from engine.settings import NtfySettings

PROVIDER = "ntfy"

# ntfy's priorities: 5 urgent (long vibration, pops over do-not-disturb on most phones), 4 high,
# 3 default, 2 low.
PRIORITIES = {"critical": "5", "error": "4", "warning": "3", "info": "2"}
# ntfy's default message-size-limit is 4096 bytes; beyond it a message becomes an attachment, or
# is refused on servers without attachments. Keep well inside it.
MAX_BODY_BYTES = 4000
MAX_TITLE = 250
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
URL_SAFE = string.punctuation.replace('"', "")  # kept as they are in an Actions URL


class PushChannel:
    """Publishes the alert to an ntfy topic with a title, a priority and tags."""

    type = "PUSH_NOTIF"

    def __init__(self, settings: NtfySettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.settings = settings
        self.session = session
        self.timeout = timeout

    async def send(self, message: Message, target: str) -> Receipt:
        """Publish one ntfy message to the topic ``target``; the receipt holds ntfy's message id."""
        response = await http.post(
            self.session,
            f"{self.settings.url.rstrip('/')}/{quote(target, safe='')}",
            provider=PROVIDER,
            data=render_body(message),
            headers=self.headers(message),
            timeout=self.timeout,
        )
        provider_id = response.json.get("id") if isinstance(response.json, dict) else None
        return Receipt(provider_id=provider_id if isinstance(provider_id, str) else None)

    def headers(self, message: Message) -> dict[str, str]:
        """ntfy's publish headers for ``message`` (Title, Priority, Tags, Authorization)."""
        tags = [message.severity] + (["test"] if message.is_test else [])
        headers = {
            "Title": header_value(message.subject[:MAX_TITLE]),
            "Priority": PRIORITIES.get(message.severity, "3"),
            "Tags": ",".join(header_value(tag) for tag in tags),
            "Content-Type": "text/plain; charset=utf-8",
        }
        sender_link = message.links[0] if message.links and message.links[0].isascii() else None
        if message.actions is not None:
            # Buttons to act from the lock screen; tapping the notification opens our page of the
            # incident(s), and the sender's first link stays one tap away as a third button.
            headers["Actions"] = actions_header(message.actions, sender_link)
            headers["Click"] = header_value(message.actions.page)
        elif sender_link is not None:
            # Tapping the notification opens the sender's first link (ntfy's Click header).
            headers["Click"] = header_value(sender_link)
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        return headers


def actions_header(actions: ActionLinks, sender_link: str | None) -> str:
    """ntfy's ``Actions`` header (its simple format): an ``http`` button POSTing each action link,
    clearing the notification once the POST succeeds; a ``view`` button for the sender's link."""
    buttons = [
        f"action=http, label=Acknowledge, url={_quoted(actions.acknowledge)}, method=POST, clear=true",
        f"action=http, label=Resolve, url={_quoted(actions.resolve)}, method=POST, clear=true",
    ]
    if sender_link is not None:
        buttons.append(f"action=view, label=Open link, url={_quoted(sender_link)}")
    return "; ".join(buttons)


def _quoted(url: str) -> str:
    """A URL as one value of the simple format: in double quotes, so that a ``,`` or ``;`` in it
    does not end the value. Whatever a header cannot carry as it is (spaces, controls, non-ASCII)
    and the ``"`` itself are percent-encoded, which means the same to the server and needs no
    backslash escape (older ntfy servers keep the backslash)."""
    return '"' + quote(url, safe=URL_SAFE) + '"'


def render_body(message: Message) -> bytes:
    """The notification text: the alert's message (its title when it has none), UTF-8, size-capped."""
    text = message.body.strip() or message.title
    raw = text.encode("utf-8")
    if len(raw) <= MAX_BODY_BYTES:
        return raw
    cut = raw[: MAX_BODY_BYTES - 3].decode("utf-8", errors="ignore")  # drops a split last character
    return (cut.rstrip() + "…").encode("utf-8")


def header_value(text: str) -> str:
    """A single-line header value; non-ASCII as an RFC 2047 encoded word, which ntfy decodes.

    HTTP header values are latin-1 at best, and a newline would end the header (aiohttp refuses it).
    """
    text = " ".join(_CONTROL.sub(" ", text).split())
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="
