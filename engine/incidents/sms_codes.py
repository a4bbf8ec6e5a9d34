"""Reply codes: the short number an SMS page tells its person to text back ("Reply 3a to ack, 3c to
close"), and the message (delivery) it stands for.

As GoAlert's: a code belongs to the phone number the page went to, and is the lowest one no other
message to that number still holds; a message holds its code while any incident it was about is
open, so a reply to an old page never lands on a newer one before the old one is resolved. A page
about exactly the incidents an earlier code still speaks for (the SMS rule of the next loop, a
repeat) gets that code again, so a person sees one code per incident, not one per text. The code
is assigned when the SMS is sent (``assign``, idempotent: a retried send says the same code), only
for a page of a person (a webhook's own SMS targets are nobody who could act) and only with
MONODUTY_PUBLIC_URL set (Twilio cannot reach us, nor can its signature be checked, without it);
engine.incidents.sms_replies reads it back. The incidents of a message are channel_actions.incidents_of's.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime

from engine import db
from engine.channels.base import ReplyCode
from engine.incidents.channel_actions import ACTIONABLE_KINDS

CHANNEL = "SMS"  # engine.channels.registry: the one channel a page can be answered on by text

# The person a page or bundle went to (no row: a webhook's fixed target, a notice, a digest).
PERSON = """
SELECT p.user_id FROM deliveries d JOIN pages p ON p.delivery_id = d.id
WHERE d.id = $1 AND d.kind = ANY($2::text[])
LIMIT 1
"""
# Two sends to one number never pick a code at once (a wait of milliseconds, in the deliver job).
LOCK_PHONE = "SELECT pg_advisory_xact_lock(hashtextextended('sms-reply-code:' || $1, 0))"
# The open incidents of a message (those it acts on, as channel_actions.INCIDENTS_OF), and how
# many of them it pages for (its text lists the triggered ones).
OPEN_INCIDENTS_OF = """
SELECT i.id, i.status FROM incidents i
WHERE i.status <> 'resolved'
  AND (i.id IN (SELECT incident_id FROM pages WHERE delivery_id = $1)
       OR i.id = (SELECT incident_id FROM deliveries WHERE id = $1))
ORDER BY i.id
"""
CODE_OF = "SELECT code FROM sms_reply_codes WHERE delivery_id = $1"
# The codes of this number still held: each with the open incidents of its message.
HELD = """
SELECT c.code, c.user_id, array_agg(i.id ORDER BY i.id) AS incidents
FROM sms_reply_codes c
JOIN incidents i ON i.status <> 'resolved'
    AND (i.id IN (SELECT p.incident_id FROM pages p WHERE p.delivery_id = c.delivery_id)
         OR i.id = (SELECT d.incident_id FROM deliveries d WHERE d.id = c.delivery_id))
WHERE c.phone = $1
GROUP BY c.code, c.user_id
ORDER BY c.code
"""
# A free code may still have the row of a message whose incidents are all resolved: it is taken over.
TAKE = """
INSERT INTO sms_reply_codes (phone, code, user_id, delivery_id, assigned_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (phone, code) DO UPDATE
SET user_id = excluded.user_id, delivery_id = excluded.delivery_id, assigned_at = excluded.assigned_at
"""
LOOKUP = "SELECT delivery_id, user_id FROM sms_reply_codes WHERE phone = $1 AND code = $2"


@dataclass(frozen=True)
class Held:
    """A code of one number that still speaks for open incidents."""

    code: int
    user_id: uuid.UUID
    incidents: list[uuid.UUID]


async def assign(
    conn: db.Connection, delivery_id: uuid.UUID, phone: str, now: datetime, *, public_url: str | None
) -> ReplyCode | None:
    """The reply code of this SMS to ``phone``, taken now if it has none yet; None for a message
    that is not a person's page of open incidents, and without a public URL to reply to."""
    if public_url is None:
        return None
    async with conn.transaction():
        user_id = await conn.fetchval(PERSON, delivery_id, list(ACTIONABLE_KINDS))
        if user_id is None:
            return None
        incidents = await conn.fetch(OPEN_INCIDENTS_OF, delivery_id)
        if not incidents:
            return None
        count = sum(1 for i in incidents if i["status"] == "triggered") or len(incidents)
        await conn.execute(LOCK_PHONE, phone)
        code = await conn.fetchval(CODE_OF, delivery_id)
        if code is None:
            held = await held_codes(conn, phone)
            same = [h.code for h in held if h.incidents == [i["id"] for i in incidents]]
            taken = {h.code for h in held}
            code = same[0] if same else next(n for n in itertools.count(1) if n not in taken)
            await conn.execute(TAKE, phone, code, user_id, delivery_id, now)
    return ReplyCode(code, count)


async def held_codes(conn: db.Connection, phone: str) -> list[Held]:
    """The codes of ``phone`` whose messages still have an open incident, lowest first."""
    return [Held(r["code"], r["user_id"], list(r["incidents"])) for r in await conn.fetch(HELD, phone)]


async def lookup(conn: db.Connection, phone: str, code: int) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(delivery id, person) of the message ``code`` last stood for on ``phone``, if any."""
    row = await conn.fetchrow(LOOKUP, phone, code)
    return None if row is None else (row["delivery_id"], row["user_id"])
