"""A key pressed during a page's phone call, and what the call says next. The menu itself is
engine.channels.call's; api/twilio_voice.py brings Twilio's (signed) requests here.

    4 acknowledge, 6 resolve, 5 escalate (the digits PagerDuty and GoAlert use), 1 the alert again;
    any other key, or none: "not understood" and the menu once more, then the call ends.

An action key acts through engine.incidents.channel_actions, as the person paged and "via phone
call", on every incident of the message: a bundle's call acknowledges all of them. Twilio may post
one answer twice (it retries a request that timed out, and a replayed request is as well signed as
the first), so each key acts once per call: ``call_key_presses`` holds (call, key), written in the
transaction that acts. A voicemail or fax (``AnsweredBy``, with machine detection on) is offered
nothing: the call ends, the page stays unacknowledged and escalation goes on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from engine import db
from engine.alerts.pages import BUNDLE_ORDER, bundle_message
from engine.channels.base import SEVERITIES, Message
from engine.channels.call import Stage, again, hang_up, render, voice_url
from engine.errors import Forbidden, NotFound
from engine.incidents import channel_actions
from engine.incidents.channel_actions import Action, Grant, Outcome

KEYS = {"4": Action.ACKNOWLEDGE, "6": Action.RESOLVE, "5": Action.ESCALATE}
REPEAT = "1"
VIA = "phone call"
DONE = {Action.ACKNOWLEDGE: "Acknowledged", Action.RESOLVE: "Resolved", Action.ESCALATE: "Escalated"}

RECORD = """
INSERT INTO call_key_presses (call_sid, digits, delivery_id, pressed_at) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING call_sid
"""
# What the call is about now: the message's incidents still open, as a bundle lists them.
STILL_OPEN = f"""
SELECT i.id, i.number, i.title, i.severity, i.last_alert_at, w.name AS webhook_name,
    (SELECT max(id::text) FROM alerts WHERE incident_id = i.id) AS any_alert_id
FROM incidents i JOIN webhooks w ON w.id = i.webhook_id
WHERE (i.id IN (SELECT incident_id FROM pages WHERE delivery_id = $1)
       OR i.id = (SELECT incident_id FROM deliveries WHERE id = $1))
  AND i.status <> 'resolved'
ORDER BY {BUNDLE_ORDER}
"""


@dataclass(frozen=True)
class KeyPress:
    """One request Twilio made during a call: which call, the key (``""`` for none), where in the
    call it comes from, and who answered when machine detection is on."""

    call_sid: str
    digits: str
    stage: Stage
    answered_by: str | None = None


@dataclass(frozen=True)
class Answer:
    """The TwiML to answer with, and what an action key did (its RESOLVED notices and wake-ups
    are the caller's to queue: it has committed)."""

    twiml: str
    outcome: Outcome | None = None


def is_machine(answered_by: str | None) -> bool:
    """Twilio's ``AnsweredBy``: ``machine_start``, ``machine_end_beep``... or ``fax``; ``human``
    and ``unknown`` are given the menu (a person must not lose it to a guess)."""
    return answered_by is not None and (answered_by.startswith("machine_") or answered_by == "fax")


async def answer(
    conn: db.Connection, grant: Grant, press: KeyPress, public_url: str, token: str, now: datetime
) -> Answer:
    """What the call does with ``press``, acting on the grant's incidents for an action key."""
    if is_machine(press.answered_by):
        return Answer(hang_up())
    menu_url = voice_url(public_url, token)
    if press.stage is Stage.ANSWERED or press.digits == REPEAT:
        message = await spoken(conn, grant.delivery_id)
        if message is None:
            return Answer(hang_up("Nothing of this page is open any more. Goodbye."))
        return Answer(render(message, menu_url))
    action = KEYS.get(press.digits)
    if action is None:
        if press.stage is Stage.RETRY:
            return Answer(hang_up("Not understood. Goodbye."))
        return Answer(again("Not understood.", voice_url(public_url, token, Stage.RETRY)))
    try:
        async with conn.transaction():
            first = await conn.fetchval(RECORD, press.call_sid, press.digits, grant.delivery_id, now)
            if first is None:  # this call's key acted already: say so again, do nothing
                return Answer(hang_up(f"{DONE[action]}."))
            outcome = await channel_actions.act(conn, grant, action, VIA, now)
    except (NotFound, Forbidden):  # no longer on the incident's team (or the key is not granted)
        return Answer(hang_up("You can no longer act on this incident. Goodbye."))
    return Answer(hang_up(_said(action, outcome)), outcome)


def _said(action: Action, outcome: Outcome) -> str:
    if not outcome.changed:
        return "Nothing changed: it was acknowledged or resolved already. Goodbye."
    count = len(outcome.changed)
    said = f"{DONE[action]}." if count == 1 else f"{DONE[action]} {count} incidents."
    return said + (" The next step is paged now." if action is Action.ESCALATE else "")


async def spoken(conn: db.Connection, delivery_id: uuid.UUID) -> Message | None:
    """The message a call says for ``delivery_id`` now: its incidents still open, as one page or
    one bundle says them; None when none is."""
    incidents = await conn.fetch(STILL_OPEN, delivery_id, list(SEVERITIES))
    return bundle_message(incidents[0], incidents) if incidents else None
