"""Slack incoming webhooks, and what Mattermost and Rocket.Chat accept at theirs.

One POST of ``{"text", "blocks"}``: Slack renders the Block Kit blocks (a header, the message, the
facts as fields, a line of links) and shows ``text`` in notifications; Mattermost and Rocket.Chat
ignore blocks, so ``text`` carries the whole message in mrkdwn on its own.

Slack answers ``200 ok``, and its errors as a plain-text code: ``400 invalid_payload``/``no_text``,
``403 invalid_token``/``action_prohibited``, ``404 channel_not_found``/``no_service``, ``410
channel_is_archived``, ``429`` with Retry-After. Older Slack-compatible servers answer 200 with the
error code as the body: such a 200 is a failure, and a permanent one.
"""

from __future__ import annotations

import aiohttp

from engine.channels import chat, http
from engine.channels.base import DeliveryError, Message, Receipt

PROVIDER = "slack"
MAX_HEADER = 150  # Slack's limit for a header block's text
# Error codes a Slack-compatible server may answer with a 200 (all of them mean "never").
ERROR_BODIES = frozenset(
    {
        "invalid_token", "channel_not_found", "no_service", "invalid_payload", "no_text",
        "action_prohibited", "channel_is_archived", "posting_to_general_channel_denied",
        "team_disabled", "user_not_found", "too_many_attachments",
    }
)  # fmt: skip
ICONS = {
    "critical": ":red_circle:",
    "error": ":large_orange_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
}


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > (they open entities, links and Slack's mentions,
    ``<!channel>``, ``<@U123>``); and no bare "@channel" for the Slack-compatible servers that
    read mentions out of the text (engine.channels.chat.unmention)."""
    return chat.unmention(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    # A '|' or '>' would end the URL part of <url|label>: percent-encoded, it is the same URL.
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe}|{escape(label)}>"


def payload(message: Message) -> dict[str, object]:
    icon = ICONS.get(message.severity, "")
    headline = f"{icon} {message.subject}".strip()
    body = escape(chat.body(message))
    facts = chat.facts(message)
    links = " · ".join(link(url, label) for label, url in chat.links(message))
    text_lines = [f"*{escape(headline)}*", body, " · ".join(f"{k}: {escape(v)}" for k, v in facts), links]
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:MAX_HEADER], "emoji": True}}
    ]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    blocks.append(
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{escape(v)}"} for k, v in facts]}
    )
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": links}]})
    return {"text": "\n".join(line for line in text_lines if line), "blocks": blocks}


class SlackChannel:
    """Posts the page to a Slack (or Mattermost, Rocket.Chat) incoming-webhook URL."""

    type = "SLACK"

    def __init__(self, _settings: object, session: aiohttp.ClientSession, timeout: float) -> None:
        self.session = session
        self.timeout = timeout

    async def send(self, message: Message, target: str) -> Receipt:
        response = await http.post(
            self.session, target, provider=PROVIDER, payload=payload(message), timeout=self.timeout
        )
        answer = response.text.strip()
        if answer in ERROR_BODIES:
            raise DeliveryError(f"{PROVIDER} answered {response.status}: {answer}", permanent=True)
        return Receipt(reply=answer[:100] or None)
