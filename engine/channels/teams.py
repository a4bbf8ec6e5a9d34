"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received"), with
an Adaptive Card: the message envelope ``{"type": "message", "attachments": [...]}`` with one
``application/vnd.microsoft.card.adaptive`` attachment.

The card: the headline (coloured by severity), the message, a FactSet, and ``Action.OpenUrl``
buttons to acknowledge, resolve or open the incident: opening a URL needs no bot of ours
(``Action.Submit``/``Action.Execute`` would). Workflows answer ``202 Accepted`` with no body;
their errors are JSON ``{"error": {"code", "message"}}`` (``400 InvalidRequestContent``,
``401``/``403`` for a URL whose signature is wrong, ``404 WorkflowNotFound``), ``429`` with
Retry-After.

Teams renders Markdown in a TextBlock's text and in a Fact's title and value, links ``[label](url)``
included, and has no escape for it: the alert's text would show a link to anywhere under any
label. ``plain`` breaks each ``](`` with a zero-width space, so the text shows as typed and is no
link; the card's own links are its OpenUrl actions. (``<at>`` mentions need entities we never
send: an alert's text cannot ping.)
"""

from __future__ import annotations

import aiohttp

from engine.channels import chat, http
from engine.channels.base import Message, Receipt

PROVIDER = "teams"
ZERO_WIDTH_SPACE = "\u200b"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
# Adaptive Card 1.4: what Teams renders on desktop, web and mobile.
CARD_VERSION = "1.4"
COLOURS = {"critical": "attention", "error": "attention", "warning": "warning", "info": "accent"}


def plain(text: str) -> str:
    """Text as Teams shows it, never a Markdown link (nor an image)."""
    return text.replace("](", "]" + ZERO_WIDTH_SPACE + "(")


def card(message: Message) -> dict[str, object]:
    body: list[dict[str, object]] = [
        {
            "type": "TextBlock",
            "text": plain(message.subject),
            "weight": "bolder",
            "size": "medium",
            "color": COLOURS.get(message.severity, "default"),
            "wrap": True,
        }
    ]
    text = plain(chat.body(message))
    if text:
        body.append({"type": "TextBlock", "text": text, "wrap": True})
    body.append(
        {
            "type": "FactSet",
            "facts": [{"title": label, "value": plain(value)} for label, value in chat.facts(message)],
        }
    )
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": label, "url": url} for label, url in chat.links(message)
        ],
    }


def payload(message: Message) -> dict[str, object]:
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card(message)}],
    }


class TeamsChannel:
    """Posts the page as an Adaptive Card to a Teams Workflows webhook URL."""

    type = "TEAMS"

    def __init__(self, _settings: object, session: aiohttp.ClientSession, timeout: float) -> None:
        self.session = session
        self.timeout = timeout

    async def send(self, message: Message, target: str) -> Receipt:
        await http.post(
            self.session, target, provider=PROVIDER, payload=payload(message), timeout=self.timeout
        )
        return Receipt()
