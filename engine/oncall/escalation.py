"""The escalation engine: an incident of a webhook with a policy pages the policy's steps in
turn until a person acknowledges it.

PostgreSQL holds every timer: the incident's ``escalation_step`` (the step last run, -1 none),
``escalation_loop`` (the repeat it is in), ``escalation_wave`` (times people were paged) and
``next_escalation_at``; each planned page is a row (engine.oncall.paging). ``sweep`` claims due
incidents with ``FOR UPDATE SKIP LOCKED`` and runs their next step, then turns due pages into
deliveries; it runs from a worker cron every MONODUTY_ESCALATION_SWEEP_SECONDS and from wake-up
jobs deferred to each due time (workers/escalations.py), so a lost job, a flushed Redis or a dead
worker delays a step by one sweep at most and never loses or doubles one.

A step pages its targets (users; a schedule's on-call users at that moment) through their
notification rules, assigns the incident to them (replacing the last step's), cancels the last
step's pages not yet sent and sets ``next_escalation_at`` to now + the step's delay. Its channel
targets (a team's mailing list or push topic) get one page each and no assignment: a step that
pages no person leaves the incident, and the pages still due to its people, as they were. Past the
last step the policy runs again while ``escalation_loop < repeat``, then is exhausted (a timeline
event, and nothing is due). A step with nobody to page, no person and no channel target, moves on
at once. Acknowledge and resolve (``stop``) clear ``next_escalation_at`` and cancel the pending
pages in their own transaction.
Time is the caller's ``now`` (the worker's injected clock): nothing here reads the real clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from arq.connections import ArqRedis

from engine import db, queue
from engine.clock import Clock, real_time
from engine.errors import Conflict, NotFound, ValidationError
from engine.incidents import Actor, EventKind, IncidentStatus
from engine.incidents.events import add_event
from engine.oncall import paging, policies
from engine.oncall import throttles as throttling
from engine.oncall.paging import Paged, WakeUp
from engine.oncall.policies import Policy, Target, TargetType
from engine.oncall.store import on_call_now
from engine.oncall.throttles import Throttles
from engine.teams import Role
from engine.teams.membership import CALLER_ROLE, allowed

MAX_PER_SWEEP = 20  # incidents (and pages) per transaction of a sweep
MAX_ROUNDS = 50  # transactions of one kind per sweep: a backlog is finished by the next sweeps

START = """
UPDATE incidents SET escalation_policy_id = $2, escalation_step = -1, escalation_loop = 0,
    next_escalation_at = $3
WHERE id = $1
"""
STOP = "UPDATE incidents SET next_escalation_at = NULL WHERE id = $1"
INCIDENT = """id, number, title, status, user_id, escalation_policy_id, escalation_step, escalation_loop,
    escalation_wave, next_escalation_at"""
CLAIM_DUE = f"""
SELECT {INCIDENT} FROM incidents
WHERE status = 'triggered' AND next_escalation_at <= $1
ORDER BY next_escalation_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
LOCK_ONE = f"""
SELECT {INCIDENT}, team_id, {CALLER_ROLE.format(team="i.team_id", user="$2")} FROM incidents i
WHERE id = $1
FOR UPDATE OF i
"""
ADVANCE = """
UPDATE incidents SET escalation_step = $2, escalation_loop = $3, escalation_wave = $4, next_escalation_at = $5
WHERE id = $1
"""
USERS = """
SELECT u.id, coalesce(nullif(u.name, ''), u.email) AS label FROM users u
JOIN team_members m ON m.user_id = u.id AND m.team_id = $1
WHERE u.id = ANY($2::uuid[])
"""
OF_ALERT = """
SELECT id, escalation_wave, next_escalation_at FROM incidents
WHERE (id IN (SELECT incident_id FROM alerts WHERE id = $1)
       OR id IN (SELECT incident_id FROM incident_alerts WHERE alert_id = $1))
  AND status = 'triggered' AND next_escalation_at IS NOT NULL
"""
ESCALATES = """
SELECT escalation_policy_id IS NOT NULL OR EXISTS (SELECT 1 FROM pages WHERE incident_id = $1)
FROM incidents WHERE id = $1
"""
SCHEDULE_NAME = "SELECT name FROM schedules WHERE id = $1"
ASSIGNED = """
SELECT a.user_id, u.email, u.name, a.assigned_at FROM incident_assignments a JOIN users u ON u.id = a.user_id
WHERE a.incident_id = $1 ORDER BY a.assigned_at, u.email
"""


@dataclass
class Swept:
    """What one sweep did; ``wake_ups`` are the jobs to queue for what it left due later."""

    steps: int = 0
    pages: int = 0
    wake_ups: list[WakeUp] = field(default_factory=list)
    more: bool = False  # a batch that took its limit: more may be due


def step_wake_up(incident_id: uuid.UUID, wave: int, at: datetime) -> WakeUp:
    """The wake-up of the step after wave ``wave``: one job id per incident and wave."""
    return WakeUp(f"escalate:{incident_id}:{wave}", at, step=True)


async def start(conn: db.Connection, incident_id: uuid.UUID, policy_id: uuid.UUID, now: datetime) -> None:
    """A new incident escalates under ``policy_id`` from now (its first step is due at once);
    called in the transaction that opens it."""
    await conn.execute(START, incident_id, policy_id, now)


async def stop(conn: db.Connection, incident_id: uuid.UUID, reason: str) -> None:
    """Acknowledged or resolved: nothing more is due, no planned page is sent. Called in that
    transaction, with the incident's row locked."""
    await conn.execute(STOP, incident_id)
    await paging.cancel_pending(conn, incident_id, reason)


async def escalates(conn: db.Connection, incident_id: uuid.UUID) -> bool:
    """Whether the incident pages people through a policy (not its webhook's targetChannels)."""
    return bool(await conn.fetchval(ESCALATES, incident_id))


async def notice_targets(
    conn: db.Connection, incident_id: uuid.UUID, channels: list[str]
) -> list[tuple[str, str]] | None:
    """(channel, target) of the ACKNOWLEDGED or RESOLVED notices of an escalated incident: where
    its pages went, on ``channels`` (engine.alerts.lifecycle.notice_channels). None: it does not
    escalate (the webhook's targets hear of it, as before policies)."""
    if not await escalates(conn, incident_id):
        return None
    return await paging.notice_targets(conn, incident_id, channels)


async def wake_ups_of_alert(conn: db.Connection, alert_id: uuid.UUID) -> list[WakeUp]:
    """The step wake-ups of the escalating incidents an alert just opened (process_alert queues them)."""
    rows = await conn.fetch(OF_ALERT, alert_id)
    return [step_wake_up(r["id"], r["escalation_wave"], r["next_escalation_at"]) for r in rows]


async def sweep(
    conn: db.Connection,
    now: datetime,
    *,
    limit: int = MAX_PER_SWEEP,
    throttles: Throttles = throttling.DEFAULT,
) -> Swept:
    """Run every step due at ``now`` and turn every page due at ``now`` into a delivery, one
    ``sweep_batch`` after another (callers that queue deliveries between batches loop themselves)."""
    swept = Swept()
    for _ in range(MAX_ROUNDS):
        batch = await sweep_batch(conn, now, limit=limit, throttles=throttles)
        swept.steps += batch.steps
        swept.pages += batch.pages
        swept.wake_ups += batch.wake_ups
        if not batch.more:
            break
    return swept


async def sweep_batch(
    conn: db.Connection,
    now: datetime,
    *,
    limit: int = MAX_PER_SWEEP,
    throttles: Throttles = throttling.DEFAULT,
) -> Swept:
    """Up to ``limit`` due steps in one transaction, then up to ``limit`` due pages in another
    (bundled per contact, as its ``throttles`` allow: engine.oncall.paging).

    Each claims its rows with SKIP LOCKED: any number of workers may sweep at once, and each row is
    taken by one of them. Small transactions keep an acknowledge from waiting long for its row."""
    swept = Swept()
    async with conn.transaction():
        due = await conn.fetch(CLAIM_DUE, now, limit)
        for incident in due:
            swept.wake_ups += await run_step(conn, incident, now)
    swept.steps = len(due)
    async with conn.transaction():
        swept.pages, held = await paging.send_due(conn, now, limit, throttles=throttles)
    swept.wake_ups += held
    # A step with nobody to page makes the next one due at once: it runs in the next batch.
    due_again = any(w.step and w.at <= now for w in swept.wake_ups)
    swept.more = swept.steps == limit or swept.pages == limit or due_again
    return swept


async def run_step(
    conn: db.Connection,
    incident: asyncpg.Record,
    now: datetime,
    *,
    manual: bool = False,
    via: str | None = None,
    by: uuid.UUID | None = None,
) -> list[WakeUp]:
    """Run the incident's next step (its row locked by the caller). ``manual`` (escalate now, by
    the user ``by``): past the last step the policy starts over, whatever its repeat count."""
    policy = (
        await policies.load(conn, incident["escalation_policy_id"])
        if incident["escalation_policy_id"]
        else None
    )
    incident_id = incident["id"]
    if policy is None or not policy.steps:
        await conn.execute(STOP, incident_id)
        text = "escalation stopped: its escalation policy was deleted"
        await add_event(conn, incident_id, EventKind.ESCALATION_STOPPED, Actor.SYSTEM, now, text=text)
        return []
    step, loop = incident["escalation_step"] + 1, incident["escalation_loop"]
    if step >= len(policy.steps):
        if loop >= policy.repeat and not manual:
            await conn.execute(STOP, incident_id)
            runs = f"{loop + 1} run{'s' if loop else ''}"
            text = (
                f"escalation policy {policy.name} exhausted after {runs} of its "
                f"{len(policy.steps)} steps: nobody acknowledged"
            )
            await add_event(conn, incident_id, EventKind.ESCALATION_EXHAUSTED, Actor.SYSTEM, now, text=text)
            return []
        step, loop = 0, loop + 1
    spec = policy.steps[step]
    users, gaps = await resolve_targets(conn, policy, spec.people, now)
    wave = incident["escalation_wave"] + 1
    wake_ups: list[WakeUp] = []
    if users:  # they take the incident over; with nobody, whoever had it keeps it
        await paging.cancel_pending(conn, incident_id, f"escalated to step {step + 1}")
        wake_ups += await paging.page_users(
            conn, incident_id, users, step=step, loop=loop, wave=wave, now=now
        )
    wake_ups += await paging.page_channels(
        conn, incident_id, spec.channels, step=step, loop=loop, wave=wave, now=now
    )
    for gap in gaps:
        await add_event(
            conn, incident_id, EventKind.PAGE_SKIPPED, Actor.SYSTEM, now, text=f"step {step + 1}: {gap}"
        )
    # Nobody to page: the next step is due at once rather than after a wait that reaches no one.
    next_at = now + timedelta(minutes=spec.delay_minutes) if users or spec.channels else now
    await conn.execute(ADVANCE, incident_id, step, loop, wave, next_at)
    paged = [u.label for u in users] + [f"{c.channel} {c.target}" for c in spec.channels]
    names = ", ".join(paged) or "nobody"
    again = f" (repeat {loop} of {policy.repeat})" if loop else ""
    text = f"step {step + 1} of {len(policy.steps)}{again}: paged {names}"
    actor = Actor.USER if manual else Actor.SYSTEM
    text += f" (via {via})" if via else ""
    await add_event(conn, incident_id, EventKind.ESCALATED, actor, now, text=text, user_id=by)
    return [*wake_ups, step_wake_up(incident_id, wave, next_at)]


async def resolve_targets(
    conn: db.Connection, policy: Policy, targets: tuple[Target, ...], now: datetime
) -> tuple[list[Paged], list[str]]:
    """The users a step pages, in order, once each (members of the policy's team only), and
    what could not be paged (for the timeline)."""
    wanted: list[uuid.UUID] = []
    gaps: list[str] = []
    for target in targets:
        if target.type is TargetType.USER:
            wanted.append(target.id)
        else:
            on_call = await on_call_users(conn, target.id, now)
            if not on_call:
                name = await conn.fetchval(SCHEDULE_NAME, target.id) or str(target.id)
                gaps.append(f"schedule {name} has nobody on call")
            wanted += on_call
    labels = {r["id"]: r["label"] for r in await conn.fetch(USERS, policy.team_id, wanted)} if wanted else {}
    users: list[Paged] = []
    for user_id in dict.fromkeys(wanted):
        if user_id in labels:
            users.append(Paged(user_id, labels[user_id]))
        else:
            gaps.append(f"user {user_id} is no longer a member of the team")
    return users, gaps


async def on_call_users(conn: db.Connection, schedule_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
    """Who is on call on a schedule at ``at`` (engine.oncall.store)."""
    return await on_call_now(conn, schedule_id, at)


async def _lock_for(
    conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID
) -> tuple[asyncpg.Record, uuid.UUID]:
    """The incident (row locked) and its team, for a responder or above of that team; else
    NotFound (not a member) or Forbidden."""
    row = await conn.fetchrow(LOCK_ONE, incident_id, user_id)
    allowed(
        row["caller_role"] if row else None,
        Role.RESPONDER,
        NotFound("incident not found", code="INCIDENT_NOT_FOUND"),
    )
    assert row is not None
    if row["escalation_policy_id"] is None:
        raise Conflict(
            "this incident has no escalation policy (its webhook pages its fixed targets)",
            code="NO_ESCALATION_POLICY",
        )
    if row["status"] != IncidentStatus.TRIGGERED:
        raise Conflict(
            f"incident is {row['status']}: only a triggered incident is paged", code="INCIDENT_NOT_TRIGGERED"
        )
    return row, row["team_id"]


async def escalate_now(
    conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID, now: datetime, *, via: str | None = None
) -> list[WakeUp]:
    """A person moves the incident to its next step at once (``via`` a channel, not the API)."""
    async with conn.transaction():
        row, _ = await _lock_for(conn, user_id, incident_id)
        return await run_step(conn, row, now, manual=True, via=via, by=user_id)


@dataclass(frozen=True)
class ReassignInput:
    """Exactly one of a user of the incident's team or a schedule of it (None: not given)."""

    user_id: object = None
    schedule_id: object = None


async def reassign(
    conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID, wanted: ReassignInput, now: datetime
) -> list[WakeUp]:
    """Give the incident to a user (or whoever is on call on a schedule): they are paged at once,
    the others' pending pages are cancelled, and the current step's wait starts again."""
    given = [
        (name, value)
        for name, value in (("user_id", wanted.user_id), ("schedule_id", wanted.schedule_id))
        if value is not None
    ]
    if len(given) != 1:
        raise ValidationError("give exactly one of user_id and schedule_id", field="user_id")
    name, value = given[0]
    try:
        target_id = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        target_id = None
    if target_id is None:
        raise ValidationError(f"{name} must be an id", field=name)
    kind = TargetType.USER if name == "user_id" else TargetType.SCHEDULE
    async with conn.transaction():
        row, team_id = await _lock_for(conn, user_id, incident_id)
        policy = await policies.load(conn, row["escalation_policy_id"])
        assert policy is not None  # the policy's row was joined under the incident's lock
        try:
            await policies.check_team(conn, team_id, [Target(kind, target_id)], name)
        except ValidationError as exc:
            raise ValidationError(exc.message.replace(f"{name}[0].id", name), field=name) from None
        users, gaps = await resolve_targets(conn, policy, (Target(kind, target_id),), now)
        if not users:
            raise Conflict(f"nobody to page: {'; '.join(gaps)}", code="NOBODY_TO_PAGE")
        step = max(row["escalation_step"], 0)
        wave = row["escalation_wave"] + 1
        await paging.cancel_pending(conn, incident_id, "reassigned")
        wake_ups = await paging.page_users(
            conn, incident_id, users, step=step, loop=row["escalation_loop"], wave=wave, now=now
        )
        delay = policy.steps[min(step, len(policy.steps) - 1)].delay_minutes if policy.steps else 0
        next_at = now + timedelta(minutes=delay)
        await conn.execute(
            ADVANCE, incident_id, row["escalation_step"], row["escalation_loop"], wave, next_at
        )
        text = f"reassigned to {', '.join(u.label for u in users)}"
        await add_event(conn, incident_id, EventKind.REASSIGNED, Actor.USER, now, text=text, user_id=user_id)
    return [*wake_ups, step_wake_up(incident_id, wave, next_at)]


async def enqueue_wake_ups(redis: ArqRedis, clock: Clock, wake_ups: list[WakeUp]) -> None:
    """Queue each wake-up at the real moment ``clock`` reaches its time (once per job id)."""
    for wake_up in {w.job_id: w for w in wake_ups}.values():
        await queue.enqueue_wake_up(redis, wake_up.job_id, real_time(clock, wake_up.at))


async def assigned_to(conn: db.Connection, incident_id: uuid.UUID) -> list[asyncpg.Record]:
    """The users the incident is assigned to (user_id, email, name, assigned_at)."""
    return await conn.fetch(ASSIGNED, incident_id)
