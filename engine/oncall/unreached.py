"""When nobody a step paged can be reached, its next step is due now rather than after its delay.

Receipts (engine.alerts.receipts) say when a page did not reach its person: an SMS undelivered,
a call not answered (no-answer, busy, failed, canceled, or taken by a voicemail when machine
detection says so). A person the step paged is *out of reach* once nothing more of the step is
planned for them (no page of theirs still pending) and every page of their last round failed:
the pages at their notification rules' latest delay (the loudest, as people set them: a call
after the SMS after the push), each failed for good or came back undelivered. Someone the step
could not page at all (no rules, only unverified numbers) is out of reach too. Once everyone the
step paged is, waiting out the step reaches no one: the step ends now and the sweep runs the
next one (the policy's repeat, or its end, as when the wait runs out), with an ``unreached``
event in the timeline saying why.

A push or an email, which no provider confirms, counts as reaching someone, so a person whose
last round holds one is waited for as before; so is one whose last page has no receipt yet.

Only a triggered incident, in the step (wave) that sent the page, and only to bring the next
step forward: an acknowledge clears next_escalation_at and always wins, and a late receipt of an
earlier step changes nothing. The incidents are locked (``lock``) before the delivery changes,
in the order a send locks them (incident, then delivery): two receipts of one person's pages
then see each other's, and neither deadlocks with a send.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from engine import db
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event
from engine.oncall.paging import WakeUp

# The incidents a delivery paged for in their current step (a bundle's several), in id order: two
# bundles sharing some lock them alike.
LOCK = """
SELECT i.id, i.status, i.escalation_step, i.escalation_wave, i.next_escalation_at FROM incidents i
WHERE EXISTS (SELECT 1 FROM pages p WHERE p.delivery_id = $1 AND p.status = 'sent'
              AND p.incident_id = i.id AND p.wave = i.escalation_wave)
ORDER BY i.id
FOR UPDATE OF i
"""
# Whether everyone the incident is assigned to (the step's people) is out of reach in wave $2.
EVERYONE_OUT_OF_REACH = """
WITH sent AS (
    SELECT p.user_id, p.rule_delay,
        d.status = 'failed' OR d.receipt_status IS NOT DISTINCT FROM 'undelivered' AS missed
    FROM pages p JOIN deliveries d ON d.id = p.delivery_id
    WHERE p.incident_id = $1 AND p.wave = $2 AND p.status = 'sent'
), last_round AS (
    SELECT s.user_id, bool_and(s.missed) AS missed FROM sent s
    WHERE s.rule_delay = (SELECT max(t.rule_delay) FROM sent t WHERE t.user_id = s.user_id)
    GROUP BY s.user_id
)
SELECT NOT EXISTS (
    SELECT 1 FROM incident_assignments a LEFT JOIN last_round r ON r.user_id = a.user_id
    WHERE a.incident_id = $1
      AND (r.missed IS FALSE
           OR EXISTS (SELECT 1 FROM pages p WHERE p.incident_id = $1 AND p.wave = $2
                      AND p.user_id = a.user_id AND p.status = 'pending'))
)
"""
DUE_NOW = "UPDATE incidents SET next_escalation_at = $2 WHERE id = $1"


async def lock(conn: db.Connection, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    """Lock the incidents ``delivery_id`` paged for (inside the receipt's transaction, first)."""
    return list(await conn.fetch(LOCK, delivery_id))


async def move_on(
    conn: db.Connection, incidents: list[asyncpg.Record], now: datetime, what: str
) -> tuple[list[uuid.UUID], list[WakeUp]]:
    """After a page of ``incidents`` (from ``lock``) came back undelivered (``what`` says which):
    end the current step of each one whose step's people are all out of reach. Answers those
    incidents and the wake-ups to queue once this has committed."""
    moved: list[uuid.UUID] = []
    wake_ups: list[WakeUp] = []
    for incident in incidents:
        due = incident["next_escalation_at"]
        if incident["status"] != "triggered" or due is None or due <= now:
            continue  # acknowledged or resolved, nothing left to escalate to, or due already
        wave = incident["escalation_wave"]
        if not await conn.fetchval(EVERYONE_OUT_OF_REACH, incident["id"], wave):
            continue
        await conn.execute(DUE_NOW, incident["id"], now)
        step = incident["escalation_step"] + 1
        text = f"step {step}: {what}; nobody it paged can be reached, escalating now"
        await add_event(conn, incident["id"], EventKind.UNREACHED, Actor.SYSTEM, now, text=text)
        moved.append(incident["id"])
        wake_ups.append(WakeUp(f"unreached:{incident['id']}:{wave}", now, step=True))
    return moved, wake_ups
