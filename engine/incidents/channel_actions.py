"""Acting on an incident from the message that paged you: a push button, an email link, a key
pressed during a call, an SMS reply. The one way every channel's action reaches the incident.

An action link carries a **grant**: one message (a delivery: a page, or a bundle of several
incidents' pages), the person it acts as, the actions it allows and when it expires (24 h after
the page). It is signed with a key derived from MONODUTY_SECRET_KEY for this purpose alone
(engine.auth.signing), so it cannot be guessed, altered or reused for another message. The
incidents it acts on are those of the message (``incidents_of``); a resolved one is left alone.

``act`` runs the action as that person through engine.incidents.actions and engine.oncall.escalation
(the same transactions, permission checks and stop-on-acknowledge guarantee as the API), with
the channel named in the timeline ("acknowledged via SMS reply"). Doing it again is a no-op.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from engine import db
from engine.auth import signing
from engine.channels.base import ActionLinks
from engine.errors import Conflict, Forbidden, NotFound
from engine.incidents import actions
from engine.oncall import escalation
from engine.oncall.paging import WakeUp

PURPOSE = "incident-action"
LIFETIME = timedelta(hours=24)


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    ESCALATE = "escalate"  # run the next step of its policy now


ALL_ACTIONS = frozenset(Action)
_BITS = {Action.ACKNOWLEDGE: 1, Action.RESOLVE: 2, Action.ESCALATE: 4}
_PAYLOAD = struct.Struct(">16s16sBQ")  # delivery id, user id, action bits, expiry (unix seconds)


@dataclass(frozen=True)
class Grant:
    """What one action link allows: ``actions`` on the incidents of ``delivery_id``, as ``user_id``."""

    delivery_id: uuid.UUID
    user_id: uuid.UUID
    actions: frozenset[Action]
    expires_at: datetime


def grant_for(
    delivery_id: uuid.UUID, user_id: uuid.UUID, now: datetime, actions: frozenset[Action] = ALL_ACTIONS
) -> Grant:
    return Grant(delivery_id, user_id, actions, now + LIFETIME)


def invalid() -> Forbidden:
    return Forbidden("this action link is not valid or has expired", code="ACTION_LINK_INVALID")


def token(secret_key: str, grant: Grant) -> str:
    """The grant as a URL-safe string: its fields, then their signature."""
    bits = sum(_BITS[a] for a in grant.actions)
    raw = _PAYLOAD.pack(grant.delivery_id.bytes, grant.user_id.bytes, bits, int(grant.expires_at.timestamp()))
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{payload}.{signing.sign(signing.derive_key(secret_key, PURPOSE), payload)}"


def redeem(secret_key: str | None, raw: str, now: datetime) -> Grant:
    """The grant a token carries, if its signature holds and it has not expired; else Forbidden
    (the same answer for a forged, a mangled and an expired token)."""
    payload, _, signature = raw.partition(".")
    if secret_key is None or not signature:
        raise invalid()
    if not signing.verify(signing.derive_key(secret_key, PURPOSE), payload, signature):
        raise invalid()
    try:
        fields = _PAYLOAD.unpack(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, struct.error, ValueError):
        raise invalid() from None
    delivery, user, bits, expires = fields
    expires_at = datetime.fromtimestamp(expires, UTC)
    if expires_at <= now:
        raise invalid()
    allowed = frozenset(a for a, bit in _BITS.items() if bits & bit)
    return Grant(uuid.UUID(bytes=delivery), uuid.UUID(bytes=user), allowed, expires_at)


# Deliveries whose message pages for incidents (engine.alerts.lifecycle.DeliveryKind): not the
# notices (ACKNOWLEDGED, RESOLVED), not a storm's digest.
ACTIONABLE_KINDS = ("page", "bundle")
ROUTE = "/a/"  # api/action_links.py serves it


def links(
    public_url: str | None,
    secret_key: str | None,
    delivery_id: uuid.UUID,
    user_id: uuid.UUID | None,
    kind: str,
    now: datetime,
) -> ActionLinks | None:
    """The action links of one message, or None: without MONODUTY_PUBLIC_URL and
    MONODUTY_SECRET_KEY there are none, nor for a message about no open incident."""
    if public_url is None or secret_key is None or user_id is None or kind not in ACTIONABLE_KINDS:
        return None
    grant = grant_for(delivery_id, user_id, now)
    signed = token(secret_key, grant)
    page = f"{public_url.rstrip('/')}{ROUTE}{signed}"
    return ActionLinks(
        token=signed,
        page=page,
        acknowledge=f"{page}?action={Action.ACKNOWLEDGE.value}",
        resolve=f"{page}?action={Action.RESOLVE.value}",
    )


# The incidents a message spoke of: a bundle's through its pages, any other delivery's own.
# A bundle's incidents are those its text named: the pages still sent, not those left out of it
# (engine.alerts.lifecycle.LEAVE_OUT), its lead incident included.
INCIDENTS_OF = """
SELECT DISTINCT i.id, i.number, i.title, i.status FROM incidents i
WHERE i.id IN (SELECT p.incident_id FROM pages p JOIN deliveries d ON d.id = p.delivery_id
               WHERE p.delivery_id = $1 AND (d.kind <> 'bundle' OR p.status = 'sent'))
   OR i.id = (SELECT incident_id FROM deliveries WHERE id = $1 AND kind <> 'bundle')
ORDER BY i.number
"""


async def incidents_of(conn: db.Connection, delivery_id: uuid.UUID) -> list[dict[str, object]]:
    """(id, number, title, status) of each incident the message paged for, by number."""
    return [dict(r) for r in await conn.fetch(INCIDENTS_OF, delivery_id)]


@dataclass
class Outcome:
    """What an action did: the incidents it changed, the notices (ACKNOWLEDGED, RESOLVED) and
    wake-ups to queue once it has committed (the caller enqueues them), and those it left alone
    (already so)."""

    changed: list[uuid.UUID]
    unchanged: list[uuid.UUID]
    notices: list[uuid.UUID]
    wake_ups: list[WakeUp]


async def act(conn: db.Connection, grant: Grant, action: Action, via: str, now: datetime) -> Outcome:
    """Do ``action`` to every incident of the grant's message, as its person, ``via`` a channel
    ("push", "email link", "phone call", "SMS reply"): each in its own transaction, as the API would."""
    if action not in grant.actions:
        raise invalid()
    outcome = Outcome([], [], [], [])
    refused: NotFound | Forbidden | None = None
    for incident in await incidents_of(conn, grant.delivery_id):
        incident_id = incident["id"]
        assert isinstance(incident_id, uuid.UUID)
        if incident["status"] == "resolved" or (
            action is Action.ACKNOWLEDGE and incident["status"] == "acknowledged"
        ):
            outcome.unchanged.append(incident_id)
            continue
        try:
            if action is Action.ACKNOWLEDGE:
                outcome.notices += await actions.acknowledge(conn, grant.user_id, incident_id, now, via=via)
            elif action is Action.RESOLVE:
                outcome.notices += await actions.resolve(conn, grant.user_id, incident_id, now, via=via)
            else:
                outcome.wake_ups += await escalation.escalate_now(
                    conn, grant.user_id, incident_id, now, via=via
                )
        except Conflict:  # changed meanwhile (resolved, acknowledged, no policy to escalate)
            outcome.unchanged.append(incident_id)
            continue
        except (NotFound, Forbidden) as exc:
            # No longer theirs to act on (left the team, demoted): the others' follow-ups must
            # still be queued, so this one is told, not raised, unless it is all there was.
            refused = refused or exc
            continue
        outcome.changed.append(incident_id)
    if refused is not None and not outcome.changed and not outcome.unchanged:
        raise refused
    return outcome
