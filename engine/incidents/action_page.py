"""The page behind an action link (api/action_links.py serves it): what it shows, what its
buttons offer, and acting from it.

The link is a grant (engine.incidents.channel_actions) for one message; the page shows that
message's incidents with their status now and offers the grant's acknowledge and resolve where
they would still change something. Acting from it is ``channel_actions.act`` named after the
channel the message went out on: the email's links and the push's buttons both land here, and
the timeline says "acknowledged via email link" or "via push". The channel comes from the
delivery the grant names, not from the URL, so a link cannot be edited into claiming another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine import db
from engine.errors import ValidationError
from engine.incidents import channel_actions
from engine.incidents.channel_actions import Action, Grant, Outcome

# What the page's buttons do. Escalating is a call's key press, not something to offer on a page
# that was opened from an email preview.
PAGE_ACTIONS = (Action.ACKNOWLEDGE, Action.RESOLVE)

# How the timeline names an action from the page, by the channel of the message that linked it.
VIA = {"EMAIL": "email link", "PUSH_NOTIF": "push", "SMS": "SMS link"}
VIA_OTHER = "action link"

CHANNEL_OF = "SELECT channel FROM deliveries WHERE id = $1"


@dataclass(frozen=True)
class View:
    """The page's content: the message's incidents (id, number, title, status) by number, and the
    actions its buttons offer."""

    incidents: list[dict[str, Any]]
    offers: tuple[Action, ...]


def parse_action(raw: str | None) -> Action:
    """The page action a form field or ``?action=`` names; a 400 naming ``action`` otherwise."""
    for action in PAGE_ACTIONS:
        if raw == action.value:
            return action
    raise ValidationError("action must be acknowledge or resolve", field="action")


def _offers(grant: Grant, incidents: list[dict[str, Any]]) -> tuple[Action, ...]:
    statuses = {incident["status"] for incident in incidents}
    still = {Action.ACKNOWLEDGE: "triggered" in statuses, Action.RESOLVE: bool(statuses - {"resolved"})}
    return tuple(action for action in PAGE_ACTIONS if action in grant.actions and still[action])


async def view(conn: db.Connection, grant: Grant) -> View:
    """What the page shows for ``grant``; reading it changes nothing."""
    incidents = await channel_actions.incidents_of(conn, grant.delivery_id)
    return View(incidents, _offers(grant, incidents))


async def act(conn: db.Connection, grant: Grant, action: Action, now: datetime) -> tuple[Outcome, View]:
    """Do ``action`` as the grant's person via the message's channel; what it did, and the page after.

    Each incident changes in its own transaction (channel_actions.act): the RESOLVED notices and
    wake-ups of the outcome are the caller's to queue, now that they have committed."""
    channel = await conn.fetchval(CHANNEL_OF, grant.delivery_id)
    outcome = await channel_actions.act(conn, grant, action, VIA.get(channel, VIA_OTHER), now)
    return outcome, await view(conn, grant)
