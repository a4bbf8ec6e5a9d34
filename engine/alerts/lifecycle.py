"""The life of an alert: stored once, fanned out into deliveries, finalised once.

Every step is idempotent because jobs run at least once:
- ``record_alert``, under the webhook's row lock, stores the alert and its deliveries and counts
  the call only when the alert is not stored yet (a re-run returns its pending deliveries);
- ``finish_delivery`` changes a delivery only while it is pending, and finalises the alert (and
  records its outcome for the webhook's counters: engine.alerts.call_counts) only while the alert
  is pending, under a lock on the alert row
  so that two deliveries finishing at once cannot both miss being last.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from engine import db, notifications
from engine.alerts import call_counts
from engine.alerts.pages import BUNDLE_ORDER, Row, bundle_message, page_message
from engine.alerts.payloads import ParsedAlert
from engine.channels.base import SEVERITIES, Message
from engine.channels.registry import EVENT_TYPES, TARGET_KEYS
from engine.incidents import Actor, DedupBy, EventKind
from engine.incidents import attach as incidents_attach
from engine.incidents.attach import Pages
from engine.incidents.events import add_event
from engine.incidents.noise import DEFAULT_CAPS, Caps
from engine.oncall import escalation, unreached
from engine.oncall.paging import WakeUp


class AlertStatus(StrEnum):
    PENDING = "pending"
    SUCCESSFUL = "successful"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a page whose incident was acknowledged or resolved first: never sent


class DeliveryKind(StrEnum):
    PAGE = "page"  # the alert itself, on every channel of the webhook
    RESOLVED = "resolved"  # the short RESOLVED notice, on the webhook's notify_on_resolve channels
    ACKNOWLEDGED = "acknowledged"  # the ACKNOWLEDGED notice, on the channels told of every event (WEBHOOK)
    ALERT_RECEIVED = "alert_received"  # a repeat that paged nobody, told to the same (alert.received)
    DIGEST = "digest"  # one page for a storm's held incidents (engine.incidents.digests)
    BUNDLE = "bundle"  # one page to one person for several incidents (engine.oncall.paging)


LOCK_WEBHOOK = """
SELECT id, user_id, team_id, name, notification_types, targets, dedup_by, notify_on_resolve,
    repage_on_change, escalation_policy_id
FROM webhooks WHERE id = $1 FOR NO KEY UPDATE
"""
INSERT_ALERT = """
INSERT INTO alerts (id, webhook_id, user_id, is_test, title, message, severity, source, format,
    fingerprint, resolved, details, request_id, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
ALERT_STORED = "SELECT EXISTS (SELECT 1 FROM alerts WHERE id = $1)"
INSERT_DELIVERY = """
INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
"""
PENDING_DELIVERIES = """
SELECT id, channel FROM deliveries WHERE alert_id = $1 AND status = 'pending' ORDER BY id
"""

PENDING_CHANNEL = "SELECT channel FROM deliveries WHERE id = $1 AND status = 'pending'"
# DESIGN rule 2: a page re-checks its incident in the transaction that starts it. FOR SHARE waits
# for an acknowledge being committed; once it has, the page is cancelled instead of sent.
INCIDENT_OF_PAGE = """
SELECT i.status FROM deliveries d JOIN incidents i ON i.id = d.incident_id
WHERE d.id = $1 AND d.status = 'pending' AND d.kind = 'page'
FOR SHARE OF i
"""
# The same for a bundle: every incident of its pages, new ones first (a first page jumps the queue
# ahead of repeats: engine.oncall.paging), then loudest first; those no longer triggered are left
# out of what it says (their pages become cancelled: they were never sent), and a bundle with none
# left is cancelled. ``quiet``: the page waited for the end of the person's quiet hours.
INCIDENTS_OF_BUNDLE = f"""
SELECT i.id, i.number, i.title, i.severity, i.status, w.name AS webhook_name,
    EXISTS (SELECT 1 FROM pages q
            WHERE q.delivery_id = $1 AND q.incident_id = i.id AND q.quiet_until IS NOT NULL) AS quiet
FROM incidents i JOIN webhooks w ON w.id = i.webhook_id
WHERE i.id IN (SELECT p.incident_id FROM pages p JOIN deliveries d ON d.id = p.delivery_id
               WHERE p.delivery_id = $1 AND p.status = 'sent' AND d.status = 'pending' AND d.kind = 'bundle')
ORDER BY {BUNDLE_ORDER}
FOR SHARE OF i
"""
INTERRUPTED_SEND = (
    "the worker sending it stopped after asking the provider and before recording its answer; "
    "sent again, so it may have arrived twice"
)
LEAVE_OUT = """
UPDATE pages SET status = 'cancelled', reason = $3
WHERE delivery_id = $1 AND incident_id = $2 AND status = 'sent'
"""
# The send-in-progress mark (sending_since), committed before the provider is asked and cleared
# by whatever records the attempt's outcome: an attempt that finds it still set (``interrupted``)
# follows one whose worker died between the provider taking the message and the outcome being
# recorded. ``prior`` locks the row and reads the mark as it was before this attempt sets it (an
# UPDATE's RETURNING shows only the new value), in the statement that counts the attempt.
START_ATTEMPT = """
WITH prior AS MATERIALIZED (
    SELECT id AS prior_id, sending_since AS prior_sending_since
    FROM deliveries WHERE id = $1 AND status = 'pending' FOR NO KEY UPDATE
), d AS (
    UPDATE deliveries SET attempts = attempts + 1, last_attempt_at = now(), next_attempt_at = NULL,
        possibly_duplicated = possibly_duplicated OR sending_since IS NOT NULL, sending_since = now()
    FROM prior WHERE id = prior_id AND status = 'pending'
    RETURNING id, alert_id, incident_id, digest_id, kind, channel, target, attempts, possibly_duplicated,
        last_attempt_at, prior_sending_since IS NOT NULL AS interrupted
)
SELECT d.id, d.alert_id, d.incident_id, d.kind, d.channel, d.target, d.attempts, d.possibly_duplicated,
    d.last_attempt_at, d.interrupted, w.id AS webhook_id,
    w.user_id,
    coalesce(a.is_test, false) AS is_test, a.title, a.message, a.severity, a.source, a.details, a.received_at,
    a.request_id, w.name AS webhook_name, i.number, i.title AS incident_title, i.resolved_at,
    i.resolved_by, i.acknowledged_at, i.acknowledged_by, i.last_alert_at, i.message AS incident_message,
    i.severity AS incident_severity,
    i.source AS incident_source, i.dedup_key, i.status AS incident_status,
    EXISTS (SELECT 1 FROM incident_alerts l WHERE l.alert_id = d.alert_id) AS of_member,
    (SELECT max(id::text) FROM alerts WHERE incident_id = i.id) AS any_alert_id,
    g.title AS digest_title, g.message AS digest_message, g.severity AS digest_severity,
    g.alert_id AS digest_alert_id, g.sent_at AS digest_sent_at,
    -- who acts when the message's action links are used: the person paged, else the webhook's maker.
    -- A notice of an escalated incident goes where a page went (notice_plan): to that person's
    -- target, so it is theirs (a WEBHOOK's signing secret is its owner's).
    coalesce((SELECT p.user_id FROM pages p WHERE p.delivery_id = d.id AND p.user_id IS NOT NULL LIMIT 1),
             (SELECT p.user_id FROM pages p WHERE d.kind <> 'page' AND p.incident_id = d.incident_id
                AND p.channel = d.channel AND p.target = d.target AND p.user_id IS NOT NULL LIMIT 1),
             w.user_id) AS acting_user_id
FROM d LEFT JOIN alerts a ON a.id = d.alert_id LEFT JOIN incidents i ON i.id = d.incident_id
    LEFT JOIN digests g ON g.id = d.digest_id
    JOIN webhooks w ON w.id = coalesce(a.webhook_id, i.webhook_id, g.webhook_id)
"""


def _swap(sql: str, old: str, new: str) -> str:
    assert sql.count(old) == 1, old
    return sql.replace(old, new)


# START_ATTEMPT in one statement with the check it follows (INCIDENT_OF_PAGE), for the attempts
# that need nothing else: a page whose incident is still triggered (locked FOR SHARE before the
# delivery, as INCIDENT_OF_PAGE does, and read from that lock: its latest version), or a delivery
# in no incident; not a bundle, not a notice, not one whose earlier send was interrupted. A single
# statement is its own transaction: the send-in-progress mark is committed when it returns. No row:
# start_attempt takes the long way, which cancels, leaves out, records the interruption or finds
# the delivery final.
START_AT_ONCE = _swap(
    _swap(
        _swap(
            START_ATTEMPT,
            "WITH prior AS",
            """WITH page_incident AS MATERIALIZED (
    SELECT i.* FROM deliveries d JOIN incidents i ON i.id = d.incident_id
    WHERE d.id = $1 AND d.status = 'pending' AND d.kind = 'page'
    FOR SHARE OF i
), prior AS""",
        ),
        "status = 'pending' FOR NO KEY UPDATE",
        """status = 'pending' AND sending_since IS NULL
        AND (kind = 'page' OR incident_id IS NULL) AND kind <> 'bundle'
        AND coalesce((SELECT status FROM page_incident), 'triggered') = 'triggered'
    FOR NO KEY UPDATE""",
    ),
    "LEFT JOIN incidents i ON",
    "LEFT JOIN page_incident i ON",
)
SCHEDULE_RETRY = """
UPDATE deliveries SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3),
    sending_since = CASE WHEN $4 THEN sending_since END
WHERE id = $1 AND status = 'pending'
"""
# A delivery without an alert (a person's resolve) has no alert to lock or finalise.
ALERT_OF_DELIVERY = "SELECT id, alert_id, channel, target FROM deliveries WHERE id = $1"
LOCK_ALERT = "SELECT id FROM alerts WHERE id = $1 FOR UPDATE"
# ALERT_OF_DELIVERY and LOCK_ALERT in one round trip, for an outcome with nothing to lock between.
LOCK_ALERT_OF_DELIVERY = """
SELECT d.id, d.alert_id, d.channel, d.target,
    (SELECT a.id FROM alerts a WHERE a.id = d.alert_id FOR UPDATE) AS locked_alert_id
FROM deliveries d WHERE d.id = $1
"""
# Handed over: the receipt (engine.alerts.receipts) starts at 'accepted', with what the provider
# said (an SMTP server's 250 reply), unless a status callback came first (it stays).
FINISH_DELIVERY = """
UPDATE deliveries SET status = $2, last_error = $3, provider_id = coalesce($4, provider_id),
    finished_at = now(), delivered_at = CASE WHEN $2 = 'delivered' THEN now() END, next_attempt_at = NULL,
    sending_since = NULL,
    receipt_status = coalesce(receipt_status, CASE WHEN $2 = 'delivered' THEN 'accepted' END),
    receipt_at = coalesce(receipt_at, CASE WHEN $2 = 'delivered' THEN now() END),
    provider_status = coalesce(provider_status, $5)
WHERE id = $1 AND status = 'pending'
RETURNING id, alert_id
"""
FINALISE_ALERT = """
UPDATE alerts SET finished_at = now(), status = CASE
    WHEN EXISTS (SELECT 1 FROM deliveries WHERE alert_id = $1 AND status = 'failed') THEN 'failed'
    ELSE 'successful' END
WHERE id = $1 AND status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM deliveries WHERE alert_id = $1 AND status = 'pending')
RETURNING status, is_test, webhook_id
"""
# FINISH_DELIVERY, then FINALISE_ALERT and COUNT_OUTCOME when it was the alert's last delivery, in
# one statement. Its snapshot is taken once the alert's lock is held (LOCK_ALERT_OF_DELIVERY, the
# statement before), so it sees every other delivery of the alert that finished before; it does not
# see its own UPDATE of this delivery (one snapshot for the whole statement), hence ``id <> $1``.
FINISH_AND_FINALISE = f"""
WITH f AS (
    {FINISH_DELIVERY.strip()}
), final AS (
    UPDATE alerts SET finished_at = now(), status = CASE
        WHEN $2 = 'failed' OR EXISTS (SELECT 1 FROM deliveries o
                                      WHERE o.alert_id = alerts.id AND o.id <> $1 AND o.status = 'failed')
        THEN 'failed' ELSE 'successful' END
    WHERE id = (SELECT alert_id FROM f) AND status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.alert_id = alerts.id AND o.id <> $1
                      AND o.status = 'pending')
    RETURNING id, status, is_test, webhook_id
), counted AS (
    {call_counts.COUNT_OUTCOME_OF.format(final="final")}
)
SELECT f.id, final.status, final.is_test, final.webhook_id FROM f LEFT JOIN final ON final.id = f.alert_id
"""


@dataclass(frozen=True)
class Attempt:
    """One try of one delivery, with what the channel needs to render the alert."""

    delivery_id: uuid.UUID
    alert_id: uuid.UUID | None  # None for a notice of a person's resolve or acknowledge
    webhook_id: uuid.UUID
    user_id: uuid.UUID
    channel: str
    target: str
    number: int
    message: Message
    request_id: str | None
    kind: str = DeliveryKind.PAGE.value
    # Whom the message's action links act as (engine.incidents.channel_actions): the person paged,
    # or for a webhook's own targets its maker. None where nothing can be acted on (a test send).
    acting_user_id: uuid.UUID | None = None
    incident_id: uuid.UUID | None = None  # None for a bundle (several) or a plain alert's delivery
    # An earlier attempt's send may have reached the provider unrecorded (start_attempt).
    possibly_duplicated: bool = False


@dataclass(frozen=True)
class Pending:
    """A delivery still to make: its id and channel."""

    id: uuid.UUID
    channel: str


@dataclass(frozen=True)
class Stored:
    """What ``store_alert`` left pending, and whether this call stored the alert (False: a re-run)."""

    deliveries: list[Pending]
    new: bool


async def record_alert(
    conn: db.Connection,
    alert_id: uuid.UUID,
    webhook_id: uuid.UUID,
    parsed: ParsedAlert,
    *,
    received_at: datetime,
    is_test: bool = False,
    request_id: str | None = None,
    caps: Caps = DEFAULT_CAPS,
    now: datetime | None = None,
    members: Callable[[], list[ParsedAlert]] | None = None,
) -> list[uuid.UUID] | None:
    """``store_alert``'s pending delivery ids; None when the webhook is gone."""
    stored = await store_alert(
        conn,
        alert_id,
        webhook_id,
        parsed,
        received_at=received_at,
        is_test=is_test,
        request_id=request_id,
        caps=caps,
        now=now,
        members=members,
    )
    return None if stored is None else [d.id for d in stored.deliveries]


async def store_alert(
    conn: db.Connection,
    alert_id: uuid.UUID,
    webhook_id: uuid.UUID,
    parsed: ParsedAlert,
    *,
    received_at: datetime,
    is_test: bool = False,
    request_id: str | None = None,
    caps: Caps = DEFAULT_CAPS,
    now: datetime | None = None,
    members: Callable[[], list[ParsedAlert]] | None = None,
) -> Stored | None:
    """Store the alert and one delivery per (channel, target); return the pending deliveries.

    ``caps`` are the noise caps (engine.incidents.noise), counted under the webhook's row lock taken
    here first; ``now`` is the worker's clock for them. ``members`` splits a group notification
    into its alerts, called only for a webhook with ``dedupBy: "alert"`` (one incident each).

    None when the webhook is gone (deleted after the alert was accepted: nothing to deliver).
    A re-run returns the deliveries still pending without counting the call again.
    """
    async with conn.transaction():
        webhook = await conn.fetchrow(LOCK_WEBHOOK, webhook_id)
        if webhook is None:
            return None
        # A re-run (its job ran again after a fault) stops here. Its INSERT would find the stored
        # row, and wait for a finish_delivery updating it, which waits for this webhook lock: a
        # deadlock. A plain read waits for nobody, and every writer of this alert holds the lock.
        if await conn.fetchval(ALERT_STORED, alert_id):
            return Stored(await _pending(conn, alert_id), new=False)
        inserted = await conn.fetchval(
            INSERT_ALERT,
            alert_id,
            webhook_id,
            webhook["user_id"],
            is_test,
            parsed.title,
            parsed.message,
            parsed.severity,
            parsed.source,
            parsed.format,
            parsed.fingerprint,
            parsed.resolved,
            parsed.details,
            request_id,
            received_at,
        )
        if inserted is not None:
            attached = [incidents_attach.Attached(None, Pages.PAGE)]  # a test send pages, in no incident
            if not is_test:
                await conn.execute(call_counts.COUNT_CALL, webhook_id, received_at)
                await _notify_alert(conn, webhook, alert_id, parsed)
                each = members() if members and webhook["dedup_by"] == DedupBy.ALERT else []
                if each:
                    attached = await incidents_attach.attach_each(
                        conn, webhook, alert_id, each, received_at, caps=caps, now=now
                    )
                else:
                    attached = [
                        await incidents_attach.attach(
                            conn, webhook, alert_id, parsed, received_at, caps=caps, now=now
                        )
                    ]
            rows = [
                (uuid.uuid4(), alert_id, kind, target, a.incident_id, delivery_kind)
                for a in attached
                for kind, target, delivery_kind in await _plan(conn, webhook, a)
            ]
            await conn.executemany(INSERT_DELIVERY, rows)
            if not rows:
                await _finalise(conn, alert_id)
        return Stored(await _pending(conn, alert_id), new=inserted is not None)


async def _pending(conn: db.Connection, alert_id: uuid.UUID) -> list[Pending]:
    return [Pending(r["id"], r["channel"]) for r in await conn.fetch(PENDING_DELIVERIES, alert_id)]


# A webhook's row (or one with its notification_types, targets and notify_on_resolve).
WebhookRow = asyncpg.Record | Mapping[str, Any]
# What each kind of alert sends besides pages: an incident's notices.
_NOTICES = {
    Pages.RESOLVED: DeliveryKind.RESOLVED,
    Pages.ACKNOWLEDGED: DeliveryKind.ACKNOWLEDGED,
    Pages.RECEIVED: DeliveryKind.ALERT_RECEIVED,
}


def notice_channels(kind: DeliveryKind, notify_on_resolve: Sequence[str]) -> list[str]:
    """The channels an incident's notice goes on: a resolve's on the webhook's notifyOnResolve,
    and every notice on the channels told of every event (WEBHOOK: a program that was sent
    ``incident.triggered`` is sent ``.acknowledged``, ``.resolved`` and ``alert.received`` too)."""
    chosen = list(notify_on_resolve) if kind is DeliveryKind.RESOLVED else []
    return [*chosen, *(t for t in EVENT_TYPES if t not in chosen)]


async def notice_plan(
    conn: db.Connection, webhook: WebhookRow, incident_id: uuid.UUID, kind: DeliveryKind
) -> list[tuple[str, str]]:
    """(channel, target) of an incident's notice of ``kind``, one place for a person's action
    (engine.incidents.actions) and a sender's: where its pages went if it escalates
    (engine.oncall.escalation), else the webhook's own targets on the notice's channels.
    ``webhook``: its notification_types, targets and notify_on_resolve."""
    channels = notice_channels(kind, webhook["notify_on_resolve"])
    paged = await escalation.notice_targets(conn, incident_id, channels)
    if paged is not None:
        return paged
    return _webhook_notices(webhook, channels)


def _webhook_notices(webhook: WebhookRow, channels: list[str]) -> list[tuple[str, str]]:
    return [
        (k, t)
        for k in webhook["notification_types"]
        if k in channels
        for t in webhook["targets"].get(TARGET_KEYS[k], [])
    ]


async def _plan(
    conn: db.Connection, webhook: asyncpg.Record, attached: incidents_attach.Attached
) -> list[tuple[str, str, DeliveryKind]]:
    """delivery_plan, except that the notices of an escalated incident go where its pages went
    (engine.oncall.escalation), not to the webhook's targets."""
    notice = _NOTICES.get(attached.pages)
    if notice is not None and attached.incident_id is not None:
        return [(k, t, notice) for k, t in await notice_plan(conn, webhook, attached.incident_id, notice)]
    return delivery_plan(webhook, attached.pages)


def delivery_plan(webhook: WebhookRow, pages: Pages) -> list[tuple[str, str, DeliveryKind]]:
    """(channel, target, kind) of what an alert sends: a page on every channel, or a notice on
    its channels (notice_channels) the webhook uses, or nothing."""
    if pages is Pages.NONE:
        return []
    notice = _NOTICES.get(pages)
    if notice is not None:
        channels = notice_channels(notice, webhook["notify_on_resolve"])
        return [(k, t, notice) for k, t in _webhook_notices(webhook, channels)]
    return [
        (k, t, DeliveryKind.PAGE)
        for k in webhook["notification_types"]
        for t in webhook["targets"].get(TARGET_KEYS[k], [])
    ]


async def pending_channel(conn: db.Connection, delivery_id: uuid.UUID) -> str | None:
    """The channel of a delivery still pending, without counting an attempt; None if final."""
    return await conn.fetchval(PENDING_CHANNEL, delivery_id)


async def start_attempt(
    conn: db.Connection, delivery_id: uuid.UUID, *, now: datetime | None = None
) -> Attempt | None:
    """Count a new attempt before sending (a crash mid-send still counts); None if final.

    A page of an incident acknowledged or resolved meanwhile is cancelled here, not sent.

    The attempt is marked as a send in progress when this commits. An attempt that finds the mark
    of an earlier one (its worker died after asking the provider, before recording the answer) is
    sent all the same, since a page lost is worse than a page twice, but the delivery is recorded
    as possibly duplicated, and said so in its incident's timeline (at ``now``, the worker's clock)."""
    row: Mapping[str, Any] | None = await conn.fetchrow(START_AT_ONCE, delivery_id)
    triggered: list[Row] = []
    if row is None:
        started = await _start_checked(conn, delivery_id, now)
        if started is None:
            return None
        row, triggered = started
    message = bundle_message(row, triggered) if triggered else page_message(row)
    if row["incident_id"] is not None:  # a bundle's incidents are several: it names none
        incident_id, status = str(row["incident_id"]), row["incident_status"]
        message = replace(message, incident_id=incident_id, incident_status=status)
    return Attempt(
        delivery_id=row["id"],
        alert_id=row["alert_id"],
        webhook_id=row["webhook_id"],
        user_id=row["user_id"],
        channel=row["channel"],
        target=row["target"],
        number=row["attempts"],
        message=message,
        request_id=row["request_id"],
        kind=row["kind"],
        acting_user_id=row["acting_user_id"] if row["number"] is not None or triggered else None,
        incident_id=row["incident_id"],
        possibly_duplicated=row["possibly_duplicated"],
    )


async def _start_checked(
    conn: db.Connection, delivery_id: uuid.UUID, now: datetime | None
) -> tuple[Mapping[str, Any], list[Row]] | None:
    """start_attempt's long way, one statement at a time: the row START_ATTEMPT returned and the
    triggered incidents of a bundle, or None when the delivery was cancelled or is final."""
    async with conn.transaction():
        status = await conn.fetchval(INCIDENT_OF_PAGE, delivery_id)
        if status is not None and status != "triggered":
            await finish_delivery(conn, delivery_id, DeliveryStatus.CANCELLED, error=f"incident {status}")
            return None
        # A page is no bundle: only another kind has a bundle's incidents to look for.
        bundled = (
            [] if status is not None else await conn.fetch(INCIDENTS_OF_BUNDLE, delivery_id, list(SEVERITIES))
        )
        triggered = [i for i in bundled if i["status"] == "triggered"]
        for incident in bundled:
            if incident["status"] != "triggered":  # its page is not in what goes out
                await conn.execute(LEAVE_OUT, delivery_id, incident["id"], f"incident {incident['status']}")
        if bundled and not triggered:
            error = f"incidents {', '.join(sorted({i['status'] for i in bundled}))}"
            await finish_delivery(conn, delivery_id, DeliveryStatus.CANCELLED, error=error)
            return None
        row = await conn.fetchrow(START_ATTEMPT, delivery_id)
        if row is not None and row["interrupted"] and row["incident_id"] is not None:
            await add_event(
                conn,
                row["incident_id"],
                EventKind.POSSIBLY_DUPLICATED,
                Actor.SYSTEM,
                now or row["last_attempt_at"],
                text=f"{row['channel']} to {row['target']}: {INTERRUPTED_SEND}",
            )
    return None if row is None else (row, triggered)


async def schedule_retry(
    conn: db.Connection, delivery_id: uuid.UUID, error: str, delay: float, *, maybe_sent: bool = False
) -> None:
    """Defer the next attempt; ``maybe_sent`` keeps the send-in-progress mark (the provider may
    have taken this one: the next attempt is then possibly duplicated)."""
    await conn.execute(SCHEDULE_RETRY, delivery_id, error, delay, maybe_sent)


@dataclass(frozen=True)
class Finished:
    """What recording a delivery's outcome did: the alert's final state ({status, is_test,
    webhook_id}) when it was the alert's last delivery, and, for an escalation's page that failed
    for good, the incidents whose step it ended early with the wake-ups to queue after commit."""

    alert: dict[str, Any] | None = None
    moved_on: list[uuid.UUID] = field(default_factory=list)
    wake_ups: list[WakeUp] = field(default_factory=list)


async def finish_delivery(
    conn: db.Connection,
    delivery_id: uuid.UUID,
    status: DeliveryStatus,
    *,
    error: str | None = None,
    provider_id: str | None = None,
    reply: str | None = None,
    now: datetime | None = None,
) -> Finished:
    """Record a delivery's final outcome; when it was the alert's last, finalise the alert.
    ``provider_id`` and ``reply`` are the provider's receipt (engine.channels.base.Receipt).

    A page that failed for good (``now``: the worker's clock) is a handover that reached nobody,
    as an undelivered receipt is: when nobody its step paged can be reached any more, the step
    ends now (engine.oncall.unreached), in this transaction.
    """
    if status is not DeliveryStatus.FAILED:  # nothing to lock between, nothing to do after
        return await _finish_plainly(conn, delivery_id, status, error, provider_id, reply)
    async with conn.transaction():
        delivery = await conn.fetchrow(ALERT_OF_DELIVERY, delivery_id)
        if delivery is None:
            return Finished()
        # An escalation's incidents are locked before the delivery changes, as a receipt and a
        # send lock them (incident, then delivery): two failures of one step see each other's.
        locked = (
            await unreached.lock(conn, delivery_id)
            if status is DeliveryStatus.FAILED and now is not None
            else []
        )
        # The alert is locked before the delivery changes, so two deliveries finishing at once
        # cannot both miss being last.
        if delivery["alert_id"] is not None:
            await conn.execute(LOCK_ALERT, delivery["alert_id"])
        finished = await conn.fetchrow(FINISH_DELIVERY, delivery_id, status.value, error, provider_id, reply)
        if finished is None:
            return Finished()
        moved_on: list[uuid.UUID] = []
        wake_ups: list[WakeUp] = []
        if status is DeliveryStatus.FAILED:
            await notifications.delivery_failed(conn, delivery_id)
            if locked and now is not None:
                what = f"{delivery['channel']} to {delivery['target']}: failed ({error or 'refused'})"
                moved_on, wake_ups = await unreached.move_on(conn, locked, now, what)
        alert = await _finalise(conn, finished["alert_id"]) if finished["alert_id"] is not None else None
        return Finished(alert, moved_on, wake_ups)


async def _finish_plainly(
    conn: db.Connection,
    delivery_id: uuid.UUID,
    status: DeliveryStatus,
    error: str | None,
    provider_id: str | None,
    reply: str | None,
) -> Finished:
    """finish_delivery of an outcome other than a failure, in two statements: the alert locked,
    then the delivery finished and the alert finalised and counted if it was the last."""
    async with conn.transaction():
        await conn.fetchrow(LOCK_ALERT_OF_DELIVERY, delivery_id)
        row = await conn.fetchrow(FINISH_AND_FINALISE, delivery_id, status.value, error, provider_id, reply)
    if row is None or row["status"] is None:
        return Finished()
    return Finished({"status": row["status"], "is_test": row["is_test"], "webhook_id": row["webhook_id"]})


async def _finalise(conn: db.Connection, alert_id: uuid.UUID) -> dict[str, Any] | None:
    final = await conn.fetchrow(FINALISE_ALERT, alert_id)
    if final is None:
        return None
    if not final["is_test"]:
        await conn.execute(call_counts.COUNT_OUTCOME, alert_id, final["webhook_id"], final["status"])
    return dict(final)


async def _notify_alert(
    conn: db.Connection, webhook: asyncpg.Record, alert_id: uuid.UUID, parsed: ParsedAlert
) -> None:
    await notifications.create(
        conn,
        webhook["user_id"],
        notifications.NotificationKind.ALERT_RECEIVED,
        f"[{parsed.severity.upper()}] {parsed.title}",
        f"Alert received on {webhook['name']}" + (f": {parsed.message}" if parsed.message else ""),
        webhook_id=webhook["id"],
        alert_id=alert_id,
    )
