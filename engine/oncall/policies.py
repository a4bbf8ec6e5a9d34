"""Escalation policies: a team's ordered steps "page these targets, then wait delay_minutes", and
a repeat count (0-9 more runs of all the steps after the last).

A policy belongs to a team: its members read it, admins write it, and a user outside the team
gets 404 for it (engine.teams.membership.require_role). A step's targets are users of the team,
schedules of the team and channel targets: the team's shared destinations (a mailing list, a team
push topic), checked as a webhook's targetChannels are (engine.channels.registry) and refused on a
channel this server cannot deliver on; anything else is a 400 naming the target's field. Steps are
stored whole: an update that gives ``steps`` replaces all of them. An incident escalating under a
policy reads the steps as they are when each step runs (engine.oncall.escalation).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from engine import db, validate
from engine.channels.registry import CHANNEL_TYPES, check_address, validate_target
from engine.errors import Conflict, NotFound, ValidationError
from engine.teams import Role
from engine.teams.membership import personal_team_id, require_role
from engine.validate import UNSET, Unset

MAX_STEPS = 20
MAX_TARGETS = 20  # per step
MAX_REPEAT = 9
MAX_DELAY_MINUTES = 1440  # a day between two steps: past that it is not an escalation


class TargetType(StrEnum):
    USER = "user"
    SCHEDULE = "schedule"
    CHANNEL = "channel"


# The keys of a user or schedule target, and of a channel target: as sent, as stored (escalation_steps).
ID_KEYS = {"type", "id"}
CHANNEL_KEYS = {"type", "channel", "target"}
SHAPE = '{"type": "user" or "schedule", "id": ...} or {"type": "channel", "channel": ..., "target": ...}'


@dataclass(frozen=True)
class StepInput:
    """One step as asked for; UNSET is a field left out. Checked here, whatever the types."""

    delay_minutes: object = UNSET
    targets: object = UNSET


@dataclass(frozen=True)
class PolicyInput:
    """A create or an update. ``steps`` holds StepInput items (anything else is refused by index)."""

    name: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    team_id: object = UNSET
    repeat: object = UNSET
    steps: object = UNSET


@dataclass(frozen=True)
class Target:
    """A user of the policy's team, or a schedule of it (whoever is on call when the step runs)."""

    type: TargetType
    id: uuid.UUID

    def to_json(self) -> dict[str, str]:
        return {"type": self.type.value, "id": str(self.id)}


@dataclass(frozen=True)
class ChannelTarget:
    """The team's shared destination on one channel (a mailing list, a team push topic): the step
    sends it one message, through no notification rules, and assigns it nothing."""

    channel: str  # one of engine.channels.registry.CHANNEL_TYPES
    target: str  # as that channel's validator normalised it

    def to_json(self) -> dict[str, str]:
        return {"type": TargetType.CHANNEL.value, "channel": self.channel, "target": self.target}


StepTarget = Target | ChannelTarget


@dataclass(frozen=True)
class Step:
    position: int
    delay_minutes: float
    targets: tuple[StepTarget, ...]  # in the order given

    @property
    def people(self) -> tuple[Target, ...]:
        """The users and schedules: who the step pages and assigns."""
        return tuple(t for t in self.targets if isinstance(t, Target))

    @property
    def channels(self) -> tuple[ChannelTarget, ...]:
        return tuple(t for t in self.targets if isinstance(t, ChannelTarget))


@dataclass(frozen=True)
class Policy:
    id: uuid.UUID
    team_id: uuid.UUID
    name: str
    description: str | None
    repeat: int
    steps: tuple[Step, ...]
    created_at: datetime
    updated_at: datetime


COLUMNS = "id, team_id, name, description, repeat, created_at, updated_at"
SELECT_ONE = f"SELECT {COLUMNS} FROM escalation_policies WHERE id = $1"
SELECT_OF_USER = f"""
SELECT {COLUMNS} FROM escalation_policies
WHERE team_id IN (SELECT team_id FROM team_members WHERE user_id = $1)
ORDER BY created_at, id
"""
SELECT_STEPS = """
SELECT policy_id, position, delay_minutes, targets FROM escalation_steps
WHERE policy_id = ANY($1::uuid[]) ORDER BY policy_id, position
"""
INSERT = f"""
INSERT INTO escalation_policies (id, team_id, name, description, repeat, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
RETURNING {COLUMNS}
"""
UPDATE = f"""
UPDATE escalation_policies SET name = $2, description = $3, repeat = $4, updated_at = $5 WHERE id = $1
RETURNING {COLUMNS}
"""
DELETE_STEPS = "DELETE FROM escalation_steps WHERE policy_id = $1"
INSERT_STEP = """
INSERT INTO escalation_steps (id, policy_id, position, delay_minutes, targets) VALUES ($1, $2, $3, $4, $5)
"""
LOCK = "SELECT team_id FROM escalation_policies WHERE id = $1 FOR UPDATE"
IN_USE = "SELECT count(*) FROM webhooks WHERE escalation_policy_id = $1"
DELETE = "DELETE FROM escalation_policies WHERE id = $1"
MEMBERS = "SELECT user_id FROM team_members WHERE team_id = $1 AND user_id = ANY($2::uuid[])"
TEAM_SCHEDULES = "SELECT id FROM schedules WHERE team_id = $1 AND id = ANY($2::uuid[])"


def not_found() -> NotFound:
    return NotFound("escalation policy not found", code="ESCALATION_POLICY_NOT_FOUND")


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, not_found)


def _stored(target: dict[str, str]) -> StepTarget:
    if target["type"] == TargetType.CHANNEL:
        return ChannelTarget(target["channel"], target["target"])
    return Target(TargetType(target["type"]), uuid.UUID(target["id"]))


def _steps_of(records: list[asyncpg.Record]) -> dict[uuid.UUID, tuple[Step, ...]]:
    found: dict[uuid.UUID, list[Step]] = {}
    for r in records:
        targets = tuple(_stored(t) for t in r["targets"])
        found.setdefault(r["policy_id"], []).append(Step(r["position"], float(r["delay_minutes"]), targets))
    return {policy_id: tuple(steps) for policy_id, steps in found.items()}


async def _with_steps(conn: db.Connection, records: list[asyncpg.Record]) -> list[Policy]:
    steps = _steps_of(await conn.fetch(SELECT_STEPS, [r["id"] for r in records]))
    return [
        Policy(
            r["id"],
            r["team_id"],
            r["name"],
            r["description"],
            r["repeat"],
            steps.get(r["id"], ()),
            r["created_at"],
            r["updated_at"],
        )
        for r in records
    ]


async def load(conn: db.Connection, policy_id: uuid.UUID) -> Policy | None:
    """The policy as it is now, whoever asks (the escalation engine); None if it is gone."""
    record = await conn.fetchrow(SELECT_ONE, policy_id)
    return (await _with_steps(conn, [record]))[0] if record else None


async def list_policies(conn: db.Connection, user_id: uuid.UUID) -> list[Policy]:
    """The policies of every team the user belongs to."""
    return await _with_steps(conn, await conn.fetch(SELECT_OF_USER, user_id))


async def get_policy(conn: db.Connection, user_id: uuid.UUID, policy_id: uuid.UUID) -> Policy:
    """Any member of the policy's team reads it; anyone else gets NotFound."""
    policy = await load(conn, policy_id)
    if policy is None:
        raise not_found()
    await _require(conn, policy.team_id, user_id, Role.VIEWER)
    return policy


async def _require(conn: db.Connection, team_id: uuid.UUID, user_id: uuid.UUID, minimum: Role) -> None:
    try:
        await require_role(conn, team_id, user_id, minimum)
    except NotFound:
        raise not_found() from None  # a policy of a team you are outside of does not exist for you


async def create_policy(
    conn: db.Connection, user_id: uuid.UUID, wanted: PolicyInput, *, now: datetime, available: Collection[str]
) -> Policy:
    """A team admin's new policy (in ``team_id``, else the caller's personal team). ``available``:
    the channel types this server can deliver (engine.channels.registry.configured_types)."""
    name = validate.text(wanted.name, "name", required=True, min_length=1, max_length=100)
    assert name is not None
    description = validate.text(wanted.description, "description", max_length=1000, nullable=True)
    repeat = _repeat(wanted.repeat)
    if wanted.steps is UNSET:
        raise ValidationError("steps is required: at least one step", field="steps")
    async with conn.transaction():
        if wanted.team_id is UNSET:
            team_id = await personal_team_id(conn, user_id)
        else:
            team_id = _team_id(wanted.team_id)
        await require_role(conn, team_id, user_id, Role.ADMIN)
        steps = await _steps(conn, team_id, wanted.steps, available)
        policy_id = uuid.uuid4()
        await conn.execute(INSERT, policy_id, team_id, name, description, repeat, now)
        await _store_steps(conn, policy_id, steps)
    policy = await load(conn, policy_id)
    assert policy is not None
    return policy


async def update_policy(
    conn: db.Connection,
    user_id: uuid.UUID,
    policy_id: uuid.UUID,
    wanted: PolicyInput,
    *,
    now: datetime,
    available: Collection[str],
) -> Policy:
    """A team admin's change; fields left out keep their value, ``steps`` replaces all steps
    (``available`` as for create_policy)."""
    if wanted.team_id is not UNSET:
        raise ValidationError("team_id cannot change; make a new policy in the other team", field="team_id")
    async with conn.transaction():
        team_id = await conn.fetchval(LOCK, policy_id)
        if team_id is None:
            raise not_found()
        await _require(conn, team_id, user_id, Role.ADMIN)
        current = await load(conn, policy_id)
        assert current is not None
        name = validate.text(wanted.name, "name", min_length=1, max_length=100) or current.name
        description = (
            current.description
            if wanted.description is UNSET
            else validate.text(wanted.description, "description", max_length=1000, nullable=True)
        )
        repeat = current.repeat if wanted.repeat is UNSET else _repeat(wanted.repeat)
        await conn.fetchrow(UPDATE, policy_id, name, description, repeat, now)
        if wanted.steps is not UNSET:
            steps = await _steps(conn, team_id, wanted.steps, available)
            await conn.execute(DELETE_STEPS, policy_id)
            await _store_steps(conn, policy_id, steps)
    policy = await load(conn, policy_id)
    assert policy is not None
    return policy


async def delete_policy(conn: db.Connection, user_id: uuid.UUID, policy_id: uuid.UUID) -> None:
    """A team admin deletes a policy no webhook uses (else 409: a webhook would silently fall back
    to paging its targetChannels). Incidents escalating under it stop escalating."""
    async with conn.transaction():
        team_id = await conn.fetchval(LOCK, policy_id)
        if team_id is None:
            raise not_found()
        await _require(conn, team_id, user_id, Role.ADMIN)
        used = await conn.fetchval(IN_USE, policy_id)
        if used:
            raise Conflict(
                f"{used} webhook(s) use this escalation policy; give them another (or none) first",
                code="ESCALATION_POLICY_IN_USE",
            )
        await conn.execute(DELETE, policy_id)


def _team_id(value: object) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError("team_id must be the id of one of your teams", field="team_id")


def _repeat(value: object) -> int:
    if value is UNSET:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPEAT:
        raise ValidationError(f"repeat must be a whole number from 0 to {MAX_REPEAT}", field="repeat")
    return value


def _delay(value: object, field: str) -> Decimal:
    """Minutes, fractions allowed (0.5 is 30 seconds), more than 0 and at most a day."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= MAX_DELAY_MINUTES:  # type: ignore[operator]
        raise ValidationError(
            f"{field} must be a number of minutes above 0 and at most {MAX_DELAY_MINUTES}", field=field
        )
    return Decimal(str(value))


async def _steps(
    conn: db.Connection, team_id: uuid.UUID, raw: object, available: Collection[str]
) -> list[tuple[Decimal, list[StepTarget]]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STEPS:
        raise ValidationError(f"steps must be an array of 1 to {MAX_STEPS} steps", field="steps")
    steps = []
    for i, step in enumerate(raw):
        field = f"steps[{i}]"
        if not isinstance(step, StepInput):
            raise ValidationError(f"{field} must be an object with delay_minutes and targets", field=field)
        if step.delay_minutes is UNSET:
            raise ValidationError(f"{field}.delay_minutes is required", field=f"{field}.delay_minutes")
        delay = _delay(step.delay_minutes, f"{field}.delay_minutes")
        targets = _targets(step.targets, f"{field}.targets", available)
        await check_team(conn, team_id, targets, f"{field}.targets")
        steps.append((delay, targets))
    return steps


def _targets(raw: object, field: str, available: Collection[str]) -> list[StepTarget]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TARGETS:
        raise ValidationError(
            f"{field} must be an array of 1 to {MAX_TARGETS} targets, each {SHAPE}", field=field
        )
    targets: list[StepTarget] = []
    for j, item in enumerate(raw):
        target = _target(item, f"{field}[{j}]", available)
        if target not in targets:
            targets.append(target)
    return targets


def _target(item: object, where: str, available: Collection[str]) -> StepTarget:
    if not isinstance(item, dict):
        raise ValidationError(f"{where} must be {SHAPE}", field=where)
    kind = TargetType(str(validate.choice(item.get("type"), f"{where}.type", tuple(TargetType))))
    unknown = sorted(set(item) - (CHANNEL_KEYS if kind is TargetType.CHANNEL else ID_KEYS))
    if unknown:
        raise ValidationError(f"unknown field: {where}.{unknown[0]}", field=f"{where}.{unknown[0]}")
    if kind is TargetType.CHANNEL:
        return _channel_target(item, where, available)
    value = item.get("id")
    try:
        target_id = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        target_id = None
    if target_id is None:
        raise ValidationError(f"{where}.id must be a {kind} id", field=f"{where}.id")
    return Target(kind, target_id)


def _channel_target(item: dict[str, object], where: str, available: Collection[str]) -> ChannelTarget:
    """A channel and a target in its format, as a webhook's targetChannels take them; a channel
    this server cannot deliver on is refused now, not dropped at the first page."""
    channel = validate.choice(item.get("channel"), f"{where}.channel", CHANNEL_TYPES)
    assert channel is not None
    if channel not in available:
        raise ValidationError(
            f"{where}.channel {channel} is not configured on this server"
            " (see the README's configuration table)",
            field=f"{where}.channel",
            code="CHANNEL_NOT_CONFIGURED",
        )
    target = validate_target(channel, item.get("target"), field=f"{where}.target")
    check_address(channel, target, field=f"{where}.target", available=available)
    return ChannelTarget(channel, target)


async def check_team(
    conn: db.Connection, team_id: uuid.UUID, targets: Sequence[StepTarget], field: str
) -> None:
    """Every user a member of the team, every schedule the team's: else a 400 naming that target."""
    people = [t for t in targets if isinstance(t, Target)]
    users = [t.id for t in people if t.type is TargetType.USER]
    members = {r["user_id"] for r in await conn.fetch(MEMBERS, team_id, users)} if users else set()
    schedules = [t.id for t in people if t.type is TargetType.SCHEDULE]
    owned: set[uuid.UUID] = set()
    if schedules:
        owned = {r["id"] for r in await conn.fetch(TEAM_SCHEDULES, team_id, schedules)}
    for j, target in enumerate(targets):
        if not isinstance(target, Target):
            continue
        known = members if target.type is TargetType.USER else owned
        if target.id not in known:
            what = "a member of" if target.type is TargetType.USER else "a schedule of"
            raise ValidationError(
                f"{field}[{j}].id must be {what} the policy's team", field=f"{field}[{j}].id"
            )


async def _store_steps(
    conn: db.Connection, policy_id: uuid.UUID, steps: list[tuple[Decimal, list[StepTarget]]]
) -> None:
    rows: list[tuple[Any, ...]] = [
        (uuid.uuid4(), policy_id, position, delay, [t.to_json() for t in targets])
        for position, (delay, targets) in enumerate(steps)
    ]
    await conn.executemany(INSERT_STEP, rows)
