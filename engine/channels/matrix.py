"""Matrix through the client-server API:
``PUT {homeserver}/_matrix/client/v3/rooms/{room id}/send/m.room.message/{txnId}``.

The transaction id is the delivery's id: a homeserver answers a repeated ``(access token, txnId)``
with the event it already sent, so a retry, or a job re-run after a lost answer, never posts the
page twice (the spec's idempotency, for free). The event is an ``m.text`` with a plain ``body``
and an HTML ``formatted_body`` (``org.matrix.custom.html``: the headline bold, the facts, links),
every piece of the alert's text HTML-escaped. An empty ``m.mentions`` says the page mentions no one:
without it, clients and servers fall back to the legacy push rules that match the plain body, and
an alert whose text says "@room" (or a member's name) would notify the whole room (Matrix 1.7,
"User and room mentions": "it is recommended that clients include a m.mentions property").

Errors are JSON ``{"errcode", "error"}``: ``401 M_UNKNOWN_TOKEN``, ``403 M_FORBIDDEN`` (the account
is not in the room), ``400 M_UNKNOWN``/``M_BAD_JSON``, ``429 M_LIMIT_EXCEEDED`` with
``retry_after_ms``; engine.channels.http reads them all.
"""

from __future__ import annotations

import re
from html import escape
from urllib.parse import quote

import aiohttp

from engine.channels import chat, http
from engine.channels.base import DeliveryError, Message, Receipt
from engine.channels.formats import TargetError
from engine.settings import MatrixSettings

PROVIDER = "matrix"
# A room id, "!opaque:server.name" (aliases, "#room:server", would need a directory lookup first).
_ROOM_ID = re.compile(r"![!-9;-~]{1,255}:[A-Za-z0-9.-]{1,255}(:[0-9]{1,5})?")


def validate_room_id(value: object, *, field: str = "room_id") -> str:
    """A Matrix room id such as ``!AbCdEf:matrix.org`` (Element: room settings, Advanced)."""
    if not isinstance(value, str):
        raise TargetError(field, "must be a string")
    room = value.strip()
    if not _ROOM_ID.fullmatch(room):
        raise TargetError(field, "must be a Matrix room id like !AbCdEfGh:matrix.org (not a #alias)")
    return room


def content(message: Message) -> dict[str, object]:
    """The m.room.message event: plain text and its HTML twin."""
    facts = chat.facts(message)
    links = chat.links(message)
    text = chat.body(message)
    plain = [
        message.subject,
        text,
        " · ".join(f"{k}: {v}" for k, v in facts),
        *(f"{k}: {u}" for k, u in links),
    ]
    html = [
        f"<strong>{escape(message.subject)}</strong>",
        escape(text).replace("\n", "<br>"),
        " · ".join(f"{escape(k)}: {escape(v)}" for k, v in facts),
        " · ".join(f'<a href="{escape(u)}">{escape(k)}</a>' for k, u in links),
    ]
    return {
        "msgtype": "m.text",
        "body": "\n".join(line for line in plain if line),
        "format": "org.matrix.custom.html",
        "formatted_body": "<br>".join(line for line in html if line),
        "m.mentions": {},  # intentional mentions: none, whatever the text says
    }


class MatrixChannel:
    """Sends the page to a Matrix room as the configured account."""

    type = "MATRIX"

    def __init__(self, settings: MatrixSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.settings = settings
        self.session = session
        self.timeout = timeout

    async def send(self, message: Message, target: str) -> Receipt:
        if message.delivery_id is None:
            raise DeliveryError("matrix: a message without a delivery has no transaction id", permanent=True)
        room, txn = quote(target, safe=""), quote(message.delivery_id, safe="")
        response = await http.post(
            self.session,
            f"{self.settings.homeserver_url}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
            method="PUT",
            provider=PROVIDER,
            payload=content(message),
            headers={"Authorization": f"Bearer {self.settings.access_token}"},
            timeout=self.timeout,
        )
        event_id = response.json.get("event_id") if isinstance(response.json, dict) else None
        return Receipt(provider_id=event_id if isinstance(event_id, str) else None)
