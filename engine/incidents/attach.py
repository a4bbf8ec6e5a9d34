"""process_alert's incident step: the alert joins the open incident of its key or opens one.

Runs inside the transaction that stores the alert (``engine.alerts.lifecycle.record_alert``), so an
alert and its incident commit together, and a re-run of the job (alert already stored) never gets
here twice. Opening is ``INSERT ... ON CONFLICT DO NOTHING`` on the unique partial index of open
keys: of two workers opening one key at once, one inserts and the other joins what it inserted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from engine import db
from engine.alerts.payloads import ParsedAlert
from engine.channels.base import SEVERITIES
from engine.channels.registry import EVENT_TYPES
from engine.incidents import Actor, EventKind, IncidentStatus, SenderAction, noise
from engine.incidents.events import add_event
from engine.incidents.keys import incident_key
from engine.incidents.noise import DEFAULT_CAPS, OVERFLOW_KEY, Caps
from engine.maintenance import holds, silences
from engine.maintenance.holds import Quiet
from engine.oncall import escalation, quiet_hours

OPEN_OF_KEY = """
SELECT id, number, severity, status, message, escalation_policy_id FROM incidents
WHERE webhook_id = $1 AND dedup_key = $2 AND status <> 'resolved'
FOR UPDATE
"""
# Numbers run per team; the team row's lock orders two incidents opened at once.
NEXT_NUMBER = "UPDATE teams SET incident_seq = incident_seq + 1 WHERE id = $1 RETURNING incident_seq"
OPEN = """
INSERT INTO incidents (id, user_id, webhook_id, number, title, message, severity, dedup_key, source,
    alert_count, first_alert_at, last_alert_at, created_at, team_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, $11, $12)
ON CONFLICT (webhook_id, dedup_key) WHERE status <> 'resolved' DO NOTHING
RETURNING id, number
"""
# A repeat updates the text (an Alertmanager group's list changes) and keeps the loudest severity.
JOIN = """
UPDATE incidents SET alert_count = alert_count + 1, last_alert_at = greatest(last_alert_at, $2),
    title = CASE WHEN $5 THEN $3 ELSE title END, message = CASE WHEN $5 THEN $4 ELSE message END,
    severity = CASE WHEN $6 THEN $7 ELSE severity END
WHERE id = $1
"""
ACKNOWLEDGE = """
UPDATE incidents SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3,
    acknowledged_by_user = $4
WHERE id = $1 AND status = 'triggered'
RETURNING id
"""
RESOLVE = """
UPDATE incidents SET status = 'resolved', resolved_at = $2, resolved_by = $3, resolved_by_user = $4
WHERE id = $1 AND status <> 'resolved'
RETURNING id
"""
LINK_ALERT = "UPDATE alerts SET incident_id = $2 WHERE id = $1"
# dedupBy "alert": one inbound alert (a group notification) touches one incident per alert of it.
LINK_MEMBER = "INSERT INTO incident_alerts (incident_id, alert_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"

GROUP_FORMATS = ("alertmanager", "grafana")  # one notification lists a whole group of alerts


class Pages(StrEnum):
    """What the alert's deliveries are: pages on every channel, RESOLVED or ACKNOWLEDGED notices
    (engine.alerts.lifecycle.notice_channels), an ``alert.received`` notice of a repeat that
    pages nobody (to the channels told of every event: WEBHOOK), or none."""

    PAGE = "page"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    RECEIVED = "received"
    NONE = "none"


@dataclass(frozen=True)
class Attached:
    incident_id: uuid.UUID | None  # None: a resolve/acknowledge for a key with nothing open
    pages: Pages


async def attach(
    conn: db.Connection,
    webhook: asyncpg.Record,
    alert_id: uuid.UUID,
    parsed: ParsedAlert,
    received_at: datetime,
    *,
    caps: Caps = DEFAULT_CAPS,
    now: datetime | None = None,
    link: bool = True,
) -> Attached:
    """Put a stored, non-test alert in its incident; say what it should send.

    The caller holds the webhook's row lock (the noise caps count under it); ``now`` is the
    worker's clock, for the storm window and maintenance (``received_at`` when not given). In a
    maintenance window, or for an alert a silence matches, nothing pages: what would is held
    (engine.maintenance)."""
    now = now or received_at
    key = incident_key(parsed, webhook["dedup_by"])
    action = SenderAction(parsed.action)
    # Before any incident row is locked (engine.maintenance.holds says why).
    window = await holds.active(conn, webhook["id"], webhook["team_id"], now)
    silence = await silences.matching(conn, webhook["id"], webhook["team_id"], parsed, now)
    quiet: Quiet | None = window or silence
    for _ in range(3):  # an open that loses the race joins the winner on the next turn
        current = await conn.fetchrow(OPEN_OF_KEY, webhook["id"], key) if key is not None else None
        if current is not None:
            attached = await _join(conn, webhook, current, alert_id, parsed, action, received_at, caps)
            break
        if action is not SenderAction.TRIGGER:
            # Recorded as an alert; nothing open to change (an overflowed key's alert is shown there).
            overflow = await noise.overflow_of_key(conn, webhook["id"], key) if key is not None else None
            if overflow is not None:
                text = f"{action.value}: {parsed.title}"
                await add_event(
                    conn, overflow, EventKind.ALERT, Actor.SENDER, received_at, text=text, alert_id=alert_id
                )
            attached = Attached(overflow, Pages.NONE)
            break
        if not noise.is_system(key) and await noise.at_cap(conn, webhook["id"], caps):
            attached = await _overflow(conn, webhook, alert_id, parsed, key, received_at, now, caps, quiet)
            break
        opened = await _open(conn, webhook, alert_id, parsed, key, received_at, now, quiet)
        if opened is not None:
            if quiet is not None or _policy(webhook) is not None:  # held, or paging through its policy
                attached = Attached(opened, Pages.NONE)
                break
            held = not noise.is_system(key) and await noise.hold_if_storm(
                conn, webhook["id"], opened, alert_id, now, caps
            )
            attached = Attached(opened, Pages.NONE if held else Pages.PAGE)
            break
    else:  # pragma: no cover - the index makes a third turn impossible
        raise RuntimeError("could not open or join an incident")
    if quiet is not None and attached.incident_id is not None and attached.pages is not Pages.NONE:
        # A join that would page again (louder, a changed group) waits too; so does a RESOLVED notice.
        if attached.pages is Pages.PAGE:
            await quiet.hold(conn, attached.incident_id, now, alert_id=alert_id)
        attached = Attached(attached.incident_id, Pages.NONE)
    elif (
        quiet is None
        and action is SenderAction.TRIGGER
        and attached.incident_id is not None
        and await silences.unsilence(conn, attached.incident_id)
    ):
        attached = await _page_unsilenced(conn, webhook, attached.incident_id, alert_id, now)
    if link and attached.incident_id is not None:
        await conn.execute(LINK_ALERT, alert_id, attached.incident_id)
    return attached


async def attach_each(
    conn: db.Connection,
    webhook: asyncpg.Record,
    alert_id: uuid.UUID,
    members: list[ParsedAlert],
    received_at: datetime,
    *,
    caps: Caps = DEFAULT_CAPS,
    now: datetime | None = None,
) -> list[Attached]:
    """``dedupBy: "alert"``: each alert of a stored group notification in its own incident (one
    ``attach`` per member, under the same caps). The stored alert belongs to all of them
    (``incident_alerts``); its ``incident_id`` names the first."""
    attached = [
        await attach(conn, webhook, alert_id, member, received_at, caps=caps, now=now, link=False)
        for member in members
    ]
    incidents = list(dict.fromkeys(a.incident_id for a in attached if a.incident_id is not None))
    await conn.executemany(LINK_MEMBER, [(incident_id, alert_id) for incident_id in incidents])
    if incidents:
        await conn.execute(LINK_ALERT, alert_id, incidents[0])
    return attached


async def _overflow(
    conn: db.Connection,
    webhook: asyncpg.Record,
    alert_id: uuid.UUID,
    parsed: ParsedAlert,
    key: str | None,
    at: datetime,
    now: datetime,
    caps: Caps,
    quiet: Quiet | None,
) -> Attached:
    """A new key past the cap: it joins the webhook's overflow incident, opened (and paged) once."""
    current = await conn.fetchrow(OPEN_OF_KEY, webhook["id"], OVERFLOW_KEY)
    incident_id = current["id"] if current is not None else None
    if incident_id is None:
        text = noise.overflow_alert(parsed, webhook["name"], caps)
        incident_id = await _open(conn, webhook, alert_id, text, OVERFLOW_KEY, at, now, quiet)
        if incident_id is None:  # pragma: no cover - the webhook's row lock lets nobody open it meanwhile
            raise RuntimeError("the overflow incident was opened meanwhile")
    opened = current is None
    await noise.join_overflow(conn, incident_id, webhook["name"], alert_id, parsed, key, at, opened=opened)
    pages = Pages.PAGE if opened and _policy(webhook) is None and quiet is None else Pages.NONE
    return Attached(incident_id, pages)


def _policy(webhook: asyncpg.Record) -> uuid.UUID | None:
    """The webhook's escalation policy: its new incidents page people through it, not targetChannels."""
    policy_id = webhook.get("escalation_policy_id")
    return policy_id if isinstance(policy_id, uuid.UUID) else None


async def _open(
    conn: db.Connection,
    webhook: asyncpg.Record,
    alert_id: uuid.UUID,
    parsed: ParsedAlert,
    key: str | None,
    at: datetime,
    now: datetime,
    quiet: Quiet | None,
) -> uuid.UUID | None:
    """Open the key's incident (None: another worker just did); in a maintenance window (or
    silenced) it is held, and its escalation starts when that is over (engine.maintenance)."""
    number = await conn.fetchval(NEXT_NUMBER, webhook["team_id"])
    incident_id = uuid.uuid4()
    row = await conn.fetchrow(
        OPEN,
        incident_id,
        webhook["user_id"],
        webhook["id"],
        number,
        parsed.title,
        parsed.message,
        parsed.severity,
        key,
        parsed.source,
        at,
        now,
        webhook["team_id"],
    )
    if row is None:
        return None
    await add_event(
        conn, incident_id, EventKind.OPENED, Actor.SENDER, at, text=parsed.title, alert_id=alert_id
    )
    policy_id = _policy(webhook)
    if quiet is not None:
        await quiet.hold(conn, incident_id, now, alert_id=alert_id)
    elif policy_id is not None:
        await escalation.start(conn, incident_id, policy_id, now)
    return incident_id


async def _page_unsilenced(
    conn: db.Connection, webhook: asyncpg.Record, incident_id: uuid.UUID, alert_id: uuid.UUID, now: datetime
) -> Attached:
    """The first alert of a silenced incident after its silence: it pages as a new incident would."""
    await add_event(
        conn,
        incident_id,
        EventKind.PAGE_RELEASED,
        Actor.SYSTEM,
        now,
        text="silence over: paged now",
        alert_id=alert_id,
    )
    policy_id = _policy(webhook)
    if policy_id is None:
        return Attached(incident_id, Pages.PAGE)
    await escalation.start(conn, incident_id, policy_id, now)
    return Attached(incident_id, Pages.NONE)


async def _join(
    conn: db.Connection,
    webhook: asyncpg.Record,
    current: asyncpg.Record,
    alert_id: uuid.UUID,
    parsed: ParsedAlert,
    action: SenderAction,
    at: datetime,
    caps: Caps,
) -> Attached:
    incident_id = current["id"]
    triggering = action is SenderAction.TRIGGER
    raised = triggering and SEVERITIES.index(parsed.severity) < SEVERITIES.index(current["severity"])
    await conn.execute(
        JOIN, incident_id, at, parsed.title, parsed.message, triggering, raised, parsed.severity
    )
    if action is SenderAction.RESOLVE:
        await conn.execute(RESOLVE, incident_id, at, Actor.SENDER.value, None)
        await escalation.stop(conn, incident_id, "incident resolved")
        await add_event(
            conn, incident_id, EventKind.RESOLVED, Actor.SENDER, at, text=parsed.title, alert_id=alert_id
        )
        return Attached(incident_id, Pages.RESOLVED)
    if action is SenderAction.ACKNOWLEDGE:
        if await conn.fetchval(ACKNOWLEDGE, incident_id, at, Actor.SENDER.value, None) is None:
            return Attached(incident_id, Pages.NONE)  # acknowledged already: nothing new to tell
        await escalation.stop(conn, incident_id, "incident acknowledged")
        await add_event(
            conn, incident_id, EventKind.ACKNOWLEDGED, Actor.SENDER, at, text=parsed.title, alert_id=alert_id
        )
        return Attached(incident_id, Pages.ACKNOWLEDGED)
    if raised:
        text = f"severity {current['severity']} -> {parsed.severity}: {parsed.title}"
        await add_event(
            conn, incident_id, EventKind.SEVERITY_RAISED, Actor.SENDER, at, text=text, alert_id=alert_id
        )
        # An escalating incident goes on with its policy: a louder alert does not restart it, but
        # pages its people's quiet hours held are decided again (a critical one goes through).
        triggered = current["status"] == IncidentStatus.TRIGGERED
        if triggered and current["escalation_policy_id"] is not None:
            await quiet_hours.release_incident(conn, incident_id, at)
        if triggered and current["escalation_policy_id"] is None:
            return Attached(incident_id, Pages.PAGE)
        return await _received(conn, webhook, current, at, caps)
    # A group whose alert list changed (an alert joined or left) pages again only when asked to.
    changed = parsed.format in GROUP_FORMATS and parsed.message != current["message"]
    kind = EventKind.GROUP_CHANGED if changed else EventKind.ALERT
    await add_event(conn, incident_id, kind, Actor.SENDER, at, text=parsed.title, alert_id=alert_id)
    repage = changed and webhook["repage_on_change"] and current["status"] == IncidentStatus.TRIGGERED
    repage = repage and current["escalation_policy_id"] is None
    if repage:
        return Attached(incident_id, Pages.PAGE)
    return await _received(conn, webhook, current, at, caps)


async def _received(
    conn: db.Connection, webhook: asyncpg.Record, current: asyncpg.Record, at: datetime, caps: Caps
) -> Attached:
    """A repeat that pages nobody is told to programs (``alert.received``), within the incident's
    notice rate (engine.incidents.noise.received_notice_due): past it, it is only counted. With no
    channel told of every event on the webhook and no policy (whose pages may have reached one),
    there is nobody to tell: the repeat costs no count query."""
    incident_id = current["id"]
    told = any(kind in EVENT_TYPES for kind in webhook["notification_types"])
    if not told and current["escalation_policy_id"] is None:
        return Attached(incident_id, Pages.NONE)
    if await noise.received_notice_due(conn, incident_id, at, caps):
        return Attached(incident_id, Pages.RECEIVED)
    return Attached(incident_id, Pages.NONE)
