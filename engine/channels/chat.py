"""What every chat message says, whatever the platform's format (Slack, Teams, Discord, Telegram,
Matrix): the headline, the facts, the message, and links.

Links rather than buttons: none of these platforms runs an interactive button without a public
app of ours registered with it, so a message links to the incident's dashboard page and to the
signed action page (engine.incidents.channel_actions), whose GET shows a button and changes
nothing (chat link previews fetch every link), and whose button acts.
"""

from __future__ import annotations

import re

from engine.channels.base import Message

# An @ that opens a mention (not an email address's): "@channel", "@here", "@all", "@someone".
_MENTION = re.compile(r"(?<![\w.+-])@(?=\w)")
ZERO_WIDTH_SPACE = "\u200b"

MAX_BODY = 1500  # characters of the alert's message a chat message carries; the rest is a link away


def facts(message: Message) -> list[tuple[str, str]]:
    """(label, value) pairs: incident, severity, source, webhook; empty values left out."""
    pairs = [
        ("Incident", f"#{message.number}" if message.number is not None else ""),
        ("Severity", message.severity.upper()),
        ("Source", message.source or ""),
        ("Webhook", message.webhook_name),
    ]
    return [(label, value) for label, value in pairs if value]


def links(message: Message) -> list[tuple[str, str]]:
    """(label, URL) pairs: acknowledge and resolve (signed), the incident's page, the sender's first link."""
    found: list[tuple[str, str]] = []
    if message.actions is not None:
        found += [("Acknowledge", message.actions.acknowledge), ("Resolve", message.actions.resolve)]
    if message.incident_url is not None:
        found.append(("Open incident", message.incident_url))
    if message.links:
        found.append(("Sender's link", message.links[0]))
    return found


def body(message: Message, limit: int = MAX_BODY) -> str:
    """The alert's message, cut to ``limit`` characters."""
    text = message.body.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def unmention(text: str) -> str:
    """``text`` with a zero-width space after each @ that would open a mention: it shows as typed
    and pings no one where the platform reads mentions out of the text (Mattermost and Rocket.Chat
    at a Slack-style webhook: "@channel", "@all"; Telegram: "@username"). Discord and Matrix are
    told "no mentions" in the message itself instead (engine.channels.discord, .matrix)."""
    return _MENTION.sub("@" + ZERO_WIDTH_SPACE, text)
