"""Pages: the planned notifications of paged users, one row per notification rule, and of a
step's channel targets, one row each; and their turning into deliveries.

Paging a user (``page_users``) inserts one row per rule of their notification plan
(engine.oncall.notification_rules), due ``delay_minutes`` after now; a rule that must not be sent
(an unverified number) is a ``skipped`` row with its reason, and a timeline event says so. Paging
a channel target (``page_channels``: a team's mailing list or push topic) inserts one row with no
user (user_id NULL) and no rule, due now; it assigns nobody. From here on both are pages alike.
``send_due`` claims due rows with ``FOR UPDATE SKIP LOCKED`` (two workers never take one row) and
takes their incidents ``FOR SHARE SKIP LOCKED``; it never waits for a lock, so it cannot deadlock
with an acknowledge, which locks the incident and then the pages. A page of a triggered incident
becomes a delivery in the transaction that marks it sent; the caller queues the deliveries of
``unqueued`` pages after commit and marks them, so a worker dying in between leaves them for the
next sweep. The deliver job re-checks the incident before each send (DESIGN rule 2).

**Bundles.** The due pages a claim takes for one contact (a person's contact method, or a channel
target) from several incidents become one delivery of kind ``bundle`` ("3 incidents need you: #41
DB down, …"), whose pages all point at it. And a contact is messaged only as often as its
throttles allow (engine.oncall.throttles: a gap between any two messages, and for calls and SMS
sliding windows): a page due sooner waits until then (its ``due_at`` moves, with a wake-up, and
its incident's timeline says "SMS to +1415•••0123 held 40 s by throttle"), and whatever else came
due for that contact meanwhile goes with it. The first page of a quiet night is never delayed; a
burst of incidents costs one message per allowed slot, not one call each.

**New incidents first.** Within a message, the first page of an incident new to its contact (a
person, whichever of their contact methods; a channel target) jumps the queue ahead of repeats,
the pages of incidents that paged them in an earlier wave (an earlier step or round of the
policy): it leads the delivery (``incident_id``: what a call says first, what a one-line SMS title
names first) and the bundle lists it first (``is_repeat``, set when the page is sent;
engine.alerts.lifecycle orders a bundle by it). The rules of one wave (the email at once, the SMS a
minute later) are all first pages.

**Quiet hours.** A person's page of an incident quieter than their quiet hours let through waits
for their end the same way (engine.oncall.quiet_hours), and goes out then in that contact's bundle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from engine import db
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event
from engine.masking import mask_target
from engine.oncall import quiet_hours
from engine.oncall import throttles as throttling
from engine.oncall.notification_rules import notification_plan
from engine.oncall.policies import ChannelTarget
from engine.oncall.quiet_hours import QuietHours
from engine.oncall.throttles import Throttles


class PageStatus(StrEnum):
    PENDING = "pending"  # due at due_at
    SENT = "sent"  # its delivery exists (delivery_id)
    CANCELLED = "cancelled"  # acknowledged, resolved or escalated past before it was due
    SKIPPED = "skipped"  # never sendable (reason): an unverified number


@dataclass(frozen=True)
class Paged:
    """A user to page, and how the timeline names them."""

    id: uuid.UUID
    label: str


@dataclass(frozen=True)
class WakeUp:
    """A Redis job to run a sweep at ``at`` (the clock's time); ``job_id`` derives from the rows,
    so queueing it again is a no-op."""

    job_id: str
    at: datetime
    step: bool = False  # the wake-up of an incident's next step (else of planned pages)


INSERT_PAGE = """
INSERT INTO pages (id, incident_id, user_id, contact_method_id, channel, target, step, loop, wave,
    rule_delay, due_at, status, reason, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING
"""
CANCEL_PENDING = """
UPDATE pages SET status = 'cancelled', reason = $2 WHERE incident_id = $1 AND status = 'pending'
"""
CLEAR_ASSIGNMENTS = "DELETE FROM incident_assignments WHERE incident_id = $1"
ASSIGN = """
INSERT INTO incident_assignments (incident_id, user_id, assigned_at, step, loop) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (incident_id, user_id) DO UPDATE SET assigned_at = $3, step = $4, loop = $5
"""
CLAIM_DUE = """
SELECT id, incident_id, user_id, channel, target, wave FROM pages
WHERE status = 'pending' AND due_at <= $1
ORDER BY due_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
# An incident locked by an acknowledge (FOR UPDATE) is skipped, not waited for: its pages are
# cancelled by that acknowledge, or claimed again by the next sweep.
LOCK_INCIDENTS = "SELECT id, status FROM incidents WHERE id = ANY($1::uuid[]) FOR SHARE SKIP LOCKED"
# kind 'page' or 'bundle' (engine.alerts.lifecycle.DeliveryKind): the deliver job re-checks its
# incidents. A bundle's incident_id is its first incident (its webhook names the delivery's owner).
INSERT_DELIVERY = """
INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind)
VALUES ($1, NULL, $2, $3, $4, $5)
"""
# The pages of one contact: {whose} is a person's ($1) on their contact method ($2, $3), or with $1
# NULL a channel target's, whichever step paged it (_of fills it in). Two forms, not one OR: each is
# found by an index (pages_contact_idx, pages_unique_channel) in any plan, a generic one too.
WHOSE_PERSON = "user_id = $1"
WHOSE_CHANNEL = "user_id IS NULL AND $1::uuid IS NULL"
# When the contact's last messages went (one row a message: a bundle's pages share theirs), newest
# first, within the lookback before now (a sent_at after now is another clock's, as in tests: it
# holds nothing back).
SENT_TIMES = """
SELECT max(sent_at) AS sent_at FROM pages
WHERE {whose} AND channel = $2 AND target = $3 AND status = 'sent' AND sent_at > $4 AND sent_at <= $5
GROUP BY delivery_id
ORDER BY 1 DESC
LIMIT $6
"""
POSTPONE = "UPDATE pages SET due_at = $2 WHERE id = ANY($1::uuid[])"
# What else is due for this contact, beyond the rows one claim took.
MORE_DUE = """
SELECT id, incident_id, user_id, channel, target, wave FROM pages
WHERE {whose} AND channel = $2 AND target = $3 AND status = 'pending' AND due_at <= $4
    AND NOT (id = ANY($5::uuid[]))
ORDER BY due_at, id
FOR UPDATE SKIP LOCKED
"""
# One sweep at a time sends to one contact; the others hold their pages back (never wait: a sweep
# waits for no lock). A hash collision only holds a page back a window.
CONTACT_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))"
MARK_SENT = """
UPDATE pages SET status = 'sent', delivery_id = $2, sent_at = $3, is_repeat = (incident_id = ANY($4::uuid[]))
WHERE id = ANY($1::uuid[])
"""
# Which of these incidents (each with the wave of its page now due) this contact was sent a page
# of in an earlier wave (an earlier step or round): a person on any contact method, a channel target
# on itself. The rules of one wave (the email, then the SMS a minute later) are one first page.
PAGED_BEFORE = """
SELECT DISTINCT p.incident_id FROM unnest($4::uuid[], $5::integer[]) AS due (incident_id, wave)
JOIN pages p ON p.incident_id = due.incident_id AND p.wave < due.wave
WHERE p.{whose} AND p.status = 'sent' AND ($1::uuid IS NOT NULL OR (p.channel = $2 AND p.target = $3))
"""
CANCEL_ONE = "UPDATE pages SET status = 'cancelled', reason = $2 WHERE id = $1"
CANCEL_PENDING_TO = """
UPDATE pages SET status = 'cancelled', reason = $3 WHERE status = 'pending' AND channel = $1 AND target = $2
"""
UNQUEUED = """
SELECT id, delivery_id FROM pages WHERE status = 'sent' AND enqueued_at IS NULL
ORDER BY sent_at LIMIT $1
"""
MARK_ENQUEUED = "UPDATE pages SET enqueued_at = $2 WHERE id = ANY($1::uuid[]) AND enqueued_at IS NULL"
NOTICE_TARGETS = """
SELECT DISTINCT channel, target FROM pages
WHERE incident_id = $1 AND status = 'sent' AND channel = ANY($2::text[])
ORDER BY channel, target
"""


async def cancel_pending(conn: db.Connection, incident_id: uuid.UUID, reason: str) -> None:
    await conn.execute(CANCEL_PENDING, incident_id, reason)


async def cancel_pending_to(conn: db.Connection, channel: str, target: str, reason: str) -> None:
    """Cancel every planned page not yet sent to one contact (a number that replied STOP)."""
    await conn.execute(CANCEL_PENDING_TO, channel, target, reason)


async def page_users(
    conn: db.Connection,
    incident_id: uuid.UUID,
    users: list[Paged],
    *,
    step: int,
    loop: int,
    wave: int,
    now: datetime,
) -> list[WakeUp]:
    """Assign the incident to ``users`` (replacing whoever had it) and plan their pages; the
    pages not yet due when this commits need the wake-ups returned."""
    await conn.execute(CLEAR_ASSIGNMENTS, incident_id)
    due_times: set[tuple[int, datetime]] = set()
    for user in users:
        await conn.execute(ASSIGN, incident_id, user.id, now, step, loop)
        plan = await notification_plan(conn, user.id)
        if not plan:
            text = f"{user.label}: no notification rules, not paged"
            await add_event(conn, incident_id, EventKind.PAGE_SKIPPED, Actor.SYSTEM, now, text=text)
            continue
        for contact in plan:
            due = now + timedelta(minutes=contact.delay_minutes)
            status = PageStatus.PENDING if contact.skipped_reason is None else PageStatus.SKIPPED
            await conn.execute(
                INSERT_PAGE,
                uuid.uuid4(),
                incident_id,
                user.id,
                contact.contact_method_id,
                contact.type,
                contact.target,
                step,
                loop,
                wave,
                contact.delay_minutes,
                due,
                status.value,
                contact.skipped_reason,
                now,
            )
            if contact.skipped_reason is not None:
                text = f"{user.label}: {contact.type} {contact.target} skipped: {contact.skipped_reason}"
                await add_event(
                    conn, incident_id, EventKind.PAGE_SKIPPED, Actor.SYSTEM, now, text=text, user_id=user.id
                )
            else:
                due_times.add((contact.delay_minutes, due))
    return [WakeUp(f"page:{incident_id}:{wave}:{delay}", due) for delay, due in sorted(due_times)]


async def page_channels(
    conn: db.Connection,
    incident_id: uuid.UUID,
    targets: tuple[ChannelTarget, ...],
    *,
    step: int,
    loop: int,
    wave: int,
    now: datetime,
) -> list[WakeUp]:
    """Plan one page of each channel target, due now: no notification rules, no assignment (a
    mailing list cannot acknowledge). Its wake-up is the one job page_users queues for rules due
    at once."""
    for target in targets:
        await conn.execute(
            INSERT_PAGE,
            uuid.uuid4(),
            incident_id,
            None,
            None,
            target.channel,
            target.target,
            step,
            loop,
            wave,
            0,
            now,
            PageStatus.PENDING.value,
            None,
            now,
        )
    return [WakeUp(f"page:{incident_id}:{wave}:0", now)] if targets else []


async def send_due(
    conn: db.Connection, now: datetime, limit: int, *, throttles: Throttles = throttling.DEFAULT
) -> tuple[int, list[WakeUp]]:
    """Turn up to ``limit`` due pages, and the other pages due for the same contacts, into
    deliveries, one per person and contact method, or per channel target (call inside a
    transaction). Answers how many rows were claimed, and the wake-ups of pages held back until
    their contact's window has passed.

    A page of an incident locked elsewhere (an acknowledge under way) is left for the next sweep."""
    due = await conn.fetch(CLAIM_DUE, now, limit)
    contacts: dict[tuple[uuid.UUID | None, str, str], list[asyncpg.Record]] = {}
    for page in due:
        contacts.setdefault((page["user_id"], page["channel"], page["target"]), []).append(page)
    wake_ups: list[WakeUp] = []
    quiet: dict[uuid.UUID, QuietHours | None] = {}
    for (user_id, channel, target), pages in sorted(contacts.items(), key=lambda c: str(c[0])):
        pages = await _past_quiet_hours(conn, user_id, pages, now, quiet, wake_ups)
        if not pages:
            continue
        held_until = await _held_until(conn, user_id, channel, target, now, throttles)
        if held_until is not None:
            await conn.execute(POSTPONE, [p["id"] for p in pages], held_until)
            await _say_held(conn, pages, channel, target, held_until - now, now)
            who = user_id or "channel"
            wake_ups.append(WakeUp(f"bundle:{who}:{channel}:{held_until.timestamp():.3f}", held_until))
            continue
        claimed = [p["id"] for p in pages]
        more = await conn.fetch(_of(MORE_DUE, user_id), user_id, channel, target, now, claimed)
        pages += await _past_quiet_hours(conn, user_id, more, now, quiet, wake_ups)
        await _send(conn, pages, user_id, channel, target, now)
    return len(due), wake_ups


async def _past_quiet_hours(
    conn: db.Connection,
    user_id: uuid.UUID | None,
    pages: list[asyncpg.Record],
    now: datetime,
    known: dict[uuid.UUID, QuietHours | None],
    wake_ups: list[WakeUp],
) -> list[asyncpg.Record]:
    """Those of a person's due ``pages`` their quiet hours let through now; the others are held
    until the quiet hours end (engine.oncall.quiet_hours), with a wake-up for then."""
    if user_id is None or not pages:
        return pages
    held = await quiet_hours.hold(conn, user_id, pages, now, known)
    wake_ups += [WakeUp(f"quiet:{user_id}:{at.timestamp():.0f}", at) for at in held.due]
    return [p for p in pages if p["id"] not in held.page_ids]


async def _held_until(
    conn: db.Connection,
    user_id: uuid.UUID | None,
    channel: str,
    target: str,
    now: datetime,
    throttles: Throttles,
) -> datetime | None:
    """When this contact (a person's contact method, or with ``user_id`` None a channel target)
    may next be sent a message, if not now: as its throttles allow, or a gap after this moment if
    another sweep is sending it one right now."""
    limits = throttles.limits(channel)
    if not limits:
        return None
    if not await conn.fetchval(CONTACT_LOCK, f"{user_id or 'channel'}:{channel}:{target}"):
        return now + timedelta(seconds=min(lim.seconds for lim in limits))
    seconds, count = throttles.lookback(channel)
    since = now - timedelta(seconds=seconds)
    rows = await conn.fetch(_of(SENT_TIMES, user_id), user_id, channel, target, since, now, count)
    return throttling.held_until(limits, [r["sent_at"] for r in rows], now)


async def _say_held(
    conn: db.Connection,
    pages: list[asyncpg.Record],
    channel: str,
    target: str,
    wait: timedelta,
    now: datetime,
) -> None:
    """One timeline line per incident whose page the throttle holds back. Only for the incidents
    this sweep can share-lock without waiting (the event's foreign key would otherwise wait for
    an acknowledge holding the incident, which waits for these pages: a deadlock); one being
    acknowledged right now has its pages cancelled anyway."""
    text = f"{channel} to {mask_target(target)} held {round(wait.total_seconds())} s by throttle"
    locked = await conn.fetch(LOCK_INCIDENTS, list({p["incident_id"] for p in pages}))
    for row in locked:
        await add_event(conn, row["id"], EventKind.PAGE_HELD, Actor.SYSTEM, now, text=text)


def _of(query: str, user_id: uuid.UUID | None) -> str:
    """``query`` for a person's contact method, or (``user_id`` None) for a channel target."""
    return query.format(whose=WHOSE_CHANNEL if user_id is None else WHOSE_PERSON)


async def _send(
    conn: db.Connection,
    pages: list[asyncpg.Record],
    user_id: uuid.UUID | None,
    channel: str,
    target: str,
    now: datetime,
) -> None:
    """One delivery for ``pages`` (one contact): of kind ``page`` when they are one incident's,
    ``bundle`` when several's; those of incidents no longer triggered are cancelled instead. A new
    incident's first page leads it, ahead of repeats (the module docstring)."""
    incidents = {
        r["id"]: r["status"]
        for r in await conn.fetch(LOCK_INCIDENTS, list({p["incident_id"] for p in pages}))
    }
    sendable = []
    for page in pages:
        status = incidents.get(page["incident_id"])
        if status is None:
            continue
        if status != "triggered":
            await conn.execute(CANCEL_ONE, page["id"], f"incident {status}")
            continue
        sendable.append(page)
    if not sendable:
        return
    waves: dict[uuid.UUID, int] = {}
    for page in sendable:
        waves[page["incident_id"]] = min(page["wave"], waves.get(page["incident_id"], page["wave"]))
    before = {
        r["incident_id"]
        for r in await conn.fetch(
            _of(PAGED_BEFORE, user_id), user_id, channel, target, list(waves), list(waves.values())
        )
    }
    sendable.sort(key=lambda p: p["incident_id"] in before)  # stable: due order within each
    lead = sendable[0]["incident_id"]
    kind = "bundle" if any(p["incident_id"] != lead for p in sendable) else "page"
    delivery_id = uuid.uuid4()
    await conn.execute(INSERT_DELIVERY, delivery_id, channel, target, lead, kind)
    await conn.execute(MARK_SENT, [p["id"] for p in sendable], delivery_id, now, list(before))


async def unqueued(conn: db.Connection, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(page id, delivery id) of sent pages whose delivery job may not be queued yet."""
    return [(r["id"], r["delivery_id"]) for r in await conn.fetch(UNQUEUED, limit)]


async def mark_enqueued(conn: db.Connection, page_ids: list[uuid.UUID], now: datetime) -> None:
    await conn.execute(MARK_ENQUEUED, page_ids, now)


async def notice_targets(
    conn: db.Connection, incident_id: uuid.UUID, channels: list[str]
) -> list[tuple[str, str]]:
    """Where a notice (ACKNOWLEDGED, RESOLVED) of an escalated incident goes: every (channel,
    target) a page of it was sent to, on ``channels``."""
    return [(r["channel"], r["target"]) for r in await conn.fetch(NOTICE_TARGETS, incident_id, channels)]
