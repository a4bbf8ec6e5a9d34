"""The dev-mode channel: keeps what would have been sent, sends nothing.

It keeps what a real message carries to act on it, so that a dev user can acknowledge from it:
the action links (the email's Acknowledge / Resolve links, the push's buttons and the page its
Click opens), an SMS's reply line ("Reply 3a to ack, 3c to close") and a call's key menu, as the
channels render them.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from engine import db
from engine.channels import call, sms
from engine.channels.base import Message, Receipt

# The channels whose messages carry the action links (email links; push buttons and Click). An SMS
# is answered with its reply code, a call with its keys: those are what the outbox shows for them.
LINKED = frozenset({"EMAIL", "PUSH_NOTIF"})
INSERT = """
INSERT INTO outbox (channel, target, subject, body, alert_id, actions, reply)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
"""
SELECT_RECENT = """
SELECT id, channel, target, subject, body, alert_id, actions, reply, created_at FROM outbox
ORDER BY id DESC LIMIT $1
"""
# One user's: the pages of their alerts, and the verification codes sent to their own contact
# methods (no alert; in dev the outbox is the only place to read them).
SELECT_RECENT_OF_USER = """
SELECT o.id, o.channel, o.target, o.subject, o.body, o.alert_id, o.actions, o.reply, o.created_at
FROM outbox o LEFT JOIN alerts a ON a.id = o.alert_id
WHERE a.user_id = $2
   OR (o.alert_id IS NULL
       AND (o.channel, o.target) IN (SELECT type, target FROM contact_methods WHERE user_id = $2))
ORDER BY o.id DESC LIMIT $1
"""


class OutboxChannel:
    """Records each send in the outbox table; `monoduty outbox` lists them."""

    def __init__(self, type: str, pool: asyncpg.Pool) -> None:
        self.type = type
        self.pool = pool

    async def send(self, message: Message, target: str) -> Receipt:
        # A message of no alert (a phone verification code) has an empty alert_id.
        alert_id = uuid.UUID(message.alert_id) if message.alert_id else None
        links = message.actions if self.type in LINKED else None
        actions = (
            {"page": links.page, "acknowledge": links.acknowledge, "resolve": links.resolve}
            if links
            else None
        )
        reply = None
        if self.type == "SMS" and message.reply is not None:
            reply = sms.render(message).splitlines()[-1]  # the line the real text ends with
        elif self.type == "CALL" and message.actions is not None:
            reply = call.MENU
        async with self.pool.acquire() as conn:
            row_id = await conn.fetchval(
                INSERT, self.type, target, message.subject, message.body, alert_id, actions, reply
            )
        return Receipt(provider_id=f"outbox-{row_id}")


async def recent(
    conn: db.Connection, limit: int = 50, *, user_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """The newest outbox entries first: all of them (the CLI), or one user's (the API)."""
    if user_id is None:
        return [dict(r) for r in await conn.fetch(SELECT_RECENT, limit)]
    return [dict(r) for r in await conn.fetch(SELECT_RECENT_OF_USER, limit, user_id)]
