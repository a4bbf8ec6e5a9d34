"""Silences, as Alertmanager's: matchers over an alert (``severity``, ``source``, ``title`` and the
sender's labels), a start, an end, a comment and a creator. An alert an active silence matches
(every matcher of it) still joins or opens its incident, which does not page: the incident is
marked silenced (``incidents.silence_id``, a ``page_held`` line in its timeline). The first alert
of it after every silence matching it is over pages it then, as a new incident would.

A silence belongs to a team and covers its webhooks (or one, ``webhook_id``). Responders and up
create and expire them, members read them; DELETE expires one now (a silence not started is
removed), and silences stay listed for 7 days after they end.

A matcher is ``{name, value, is_regex, is_equal}`` (Alertmanager's API): ``=`` is is_equal and not
is_regex, ``!=``, ``=~`` and ``!~`` the others. A regex matches the whole value, as Alertmanager
anchors it; a label the alert does not have is the empty string, so ``team!=""`` means "has it".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from engine import db, validate
from engine.alerts.payloads import ParsedAlert
from engine.errors import Conflict, NotFound, ValidationError
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event
from engine.maintenance.windows import changed_period, new_period, target
from engine.teams import Role
from engine.teams.membership import CALLER_ROLE, TEAMS_OF, allowed
from engine.validate import UNSET, Unset

MAX_MATCHERS = 20
MAX_VALUE = 1000
LISTED_AFTER_END = timedelta(days=7)
FIELDS = ("severity", "source", "title")  # an alert's own fields; any other name is a label
LABEL_KEYS = ("labels", "common_labels", "group_labels")  # where the stored details keep labels
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


@dataclass(frozen=True)
class SilenceInput:
    webhook_id: object = UNSET
    team_id: object = UNSET
    matchers: object = UNSET
    starts_at: object = UNSET
    ends_at: object = UNSET
    duration: object = UNSET
    comment: str | Unset | None = UNSET


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool
    is_equal: bool

    @property
    def operator(self) -> str:
        return ("=" if self.is_equal else "!=") + ("~" if self.is_regex else "")

    def matches(self, labels: Mapping[str, str]) -> bool:
        given = labels.get(self.name, "")
        found = re.fullmatch(self.value, given) is not None if self.is_regex else given == self.value
        return found == self.is_equal

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "is_regex": self.is_regex, "is_equal": self.is_equal}


@dataclass(frozen=True)
class Silence:
    """An active silence that matched: what a silenced incident's timeline says."""

    id: uuid.UUID
    ends_at: datetime
    comment: str

    async def hold(
        self, conn: db.Connection, incident_id: uuid.UUID, now: datetime, *, alert_id: uuid.UUID | None = None
    ) -> None:
        await conn.execute(SILENCE, incident_id, self.id)
        text = f"page held: silenced until {self.ends_at:%Y-%m-%d %H:%M} UTC, comment: {self.comment}"
        await add_event(
            conn, incident_id, EventKind.PAGE_HELD, Actor.SYSTEM, now, text=text, alert_id=alert_id
        )


COLUMNS = (
    "s.id, s.team_id, s.webhook_id, s.matchers, s.starts_at, s.ends_at, s.comment, s.created_by, s.created_at"
)
ACTIVE = """
SELECT id, matchers, ends_at, comment FROM silences
WHERE (webhook_id = $1 OR (webhook_id IS NULL AND team_id = $2)) AND starts_at <= $3 AND ends_at > $3
ORDER BY ends_at DESC, id
"""
SILENCE = "UPDATE incidents SET silence_id = $2 WHERE id = $1"
# The first alert after its silence: it pages as a new incident (the caller holds its row lock).
UNSILENCE = """
UPDATE incidents SET silence_id = NULL WHERE id = $1 AND silence_id IS NOT NULL AND status = 'triggered'
RETURNING id
"""
LIST = f"""
SELECT {COLUMNS} FROM silences s WHERE s.team_id IN {TEAMS_OF.format(user="$1")} AND s.ends_at > $2
ORDER BY s.starts_at, s.id
"""
ONE = f"""
SELECT {COLUMNS}, {CALLER_ROLE.format(team="s.team_id", user="$2")} FROM silences s WHERE s.id = $1
"""
LOCK = ONE + "FOR UPDATE OF s"
UPDATE = f"""
UPDATE silences AS s SET matchers = $2, starts_at = $3, ends_at = $4, comment = $5 WHERE s.id = $1
RETURNING {COLUMNS}
"""
WEBHOOK_TEAM = f"""
SELECT w.team_id, {CALLER_ROLE.format(team="w.team_id", user="$2")} FROM webhooks w WHERE w.id = $1
"""
INSERT = f"""
INSERT INTO silences AS s (id, team_id, webhook_id, matchers, starts_at, ends_at, comment, created_by,
    created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {COLUMNS}
"""
EXPIRE = f"UPDATE silences AS s SET ends_at = $2 WHERE s.id = $1 RETURNING {COLUMNS}"
DELETE = "DELETE FROM silences WHERE id = $1"


def not_found() -> NotFound:
    return NotFound("silence not found", code="SILENCE_NOT_FOUND")


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, not_found)


def labels_of(parsed: ParsedAlert) -> dict[str, str]:
    """What matchers look at: the sender's labels (from the stored details), then the alert's fields."""
    labels: dict[str, str] = {}
    for key in LABEL_KEYS:
        found = parsed.details.get(key)
        if isinstance(found, Mapping):
            labels.update({str(k): v for k, v in found.items() if isinstance(v, str)})
    labels.update(severity=parsed.severity, source=parsed.source or "", title=parsed.title)
    return labels


async def matching(
    conn: db.Connection, webhook_id: uuid.UUID, team_id: uuid.UUID, parsed: ParsedAlert, now: datetime
) -> Silence | None:
    """The active silence (ending last) whose every matcher matches the alert, if any."""
    labels = labels_of(parsed)
    for row in await conn.fetch(ACTIVE, webhook_id, team_id, now):
        if all(matcher_of(m).matches(labels) for m in row["matchers"]):
            return Silence(row["id"], row["ends_at"], row["comment"])
    return None


async def unsilence(conn: db.Connection, incident_id: uuid.UUID) -> bool:
    """A silenced incident an alert joined with no silence matching any more: True (page it now)."""
    return await conn.fetchval(UNSILENCE, incident_id) is not None


def matcher_of(stored: Mapping[str, Any]) -> Matcher:
    """A matcher as stored (its ``to_json``)."""
    return Matcher(stored["name"], stored["value"], stored["is_regex"], stored["is_equal"])


def parse_matchers(raw: object) -> list[Matcher]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MATCHERS:
        raise ValidationError(
            f"matchers must be an array of 1 to {MAX_MATCHERS} matchers, each "
            '{"name", "value", "isRegex", "isEqual"}',
            field="matchers",
        )
    found = []
    for i, item in enumerate(raw):
        where = f"matchers[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(f"{where} must be an object with name and value", field=where)
        unknown = sorted(set(item) - {"name", "value", "is_regex", "is_equal"})
        if unknown:
            raise ValidationError(f"unknown field: {where}.{unknown[0]}", field=f"{where}.{unknown[0]}")
        name, value = item.get("name"), item.get("value")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValidationError(
                f"{where}.name must be severity, source, title or a label name", field=f"{where}.name"
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise ValidationError(
                f"{where}.value must be a string of at most {MAX_VALUE} characters", field=f"{where}.value"
            )
        flags = []
        for flag, default in (("is_regex", False), ("is_equal", True)):
            given = item.get(flag, default)
            if not isinstance(given, bool):
                raise ValidationError(f"{where}.{flag} must be true or false", field=f"{where}.{flag}")
            flags.append(given)
        if flags[0]:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValidationError(
                    f"{where}.value is not a valid regular expression ({exc})", field=f"{where}.value"
                ) from None
        found.append(Matcher(name, value, flags[0], flags[1]))
    return found


async def list_silences(conn: db.Connection, user_id: uuid.UUID, now: datetime) -> list[asyncpg.Record]:
    """The silences of the caller's teams: active, to come, or ended within the last 7 days."""
    return await conn.fetch(LIST, user_id, now - LISTED_AFTER_END)


async def create_silence(
    conn: db.Connection, user_id: uuid.UUID, wanted: SilenceInput, now: datetime
) -> asyncpg.Record:
    """A responder's (or above) silence on one webhook of the team or all of them."""
    comment = validate.text(wanted.comment, "comment", required=True, min_length=1, max_length=500)
    matchers = parse_matchers(wanted.matchers)
    starts_at, ends_at = new_period(wanted, now)
    async with conn.transaction():
        team_id, webhook_id = await target(conn, user_id, wanted, Role.RESPONDER)
        row = await conn.fetchrow(
            INSERT,
            uuid.uuid4(),
            team_id,
            webhook_id,
            [m.to_json() for m in matchers],
            starts_at,
            ends_at,
            comment,
            user_id,
            now,
        )
    assert row is not None
    return row


async def get_silence(conn: db.Connection, user_id: uuid.UUID, silence_id: uuid.UUID) -> asyncpg.Record:
    """One silence of the caller's teams (any member reads it)."""
    row = await conn.fetchrow(ONE, silence_id, user_id)
    allowed(row["caller_role"] if row else None, Role.VIEWER, not_found())
    assert row is not None
    return row


async def update_silence(
    conn: db.Connection, user_id: uuid.UUID, silence_id: uuid.UUID, wanted: SilenceInput, now: datetime
) -> asyncpg.Record:
    """A responder (or above) changes a silence not expired: extends or shortens it (``ends_at``
    or ``duration`` from its start; an end already past expires it now), moves a pending one's
    start, changes its comment or matchers. Fields left out keep their value; what it covers
    (webhook or team) does not change."""
    for name in ("webhook_id", "team_id"):
        if getattr(wanted, name) is not UNSET:
            raise ValidationError(f"{name} cannot change; make a new silence instead", field=name)
    async with conn.transaction():
        current = await conn.fetchrow(LOCK, silence_id, user_id)
        allowed(current["caller_role"] if current else None, Role.RESPONDER, not_found())
        assert current is not None
        if current["ends_at"] <= now:
            raise Conflict("this silence has expired; make a new one", code="SILENCE_EXPIRED")
        starts_at, ends_at = changed_period(
            wanted, current["starts_at"], current["ends_at"], now, started=current["starts_at"] <= now
        )
        comment = current["comment"]
        if wanted.comment is not UNSET:
            comment = validate.text(wanted.comment, "comment", required=True, min_length=1, max_length=500)
        matchers = current["matchers"]
        if wanted.matchers is not UNSET:
            matchers = [m.to_json() for m in parse_matchers(wanted.matchers)]
        row = await conn.fetchrow(UPDATE, silence_id, matchers, starts_at, ends_at, comment)
    assert row is not None
    return row


async def expire_silence(
    conn: db.Connection, user_id: uuid.UUID, silence_id: uuid.UUID, now: datetime
) -> asyncpg.Record | None:
    """Expire an active silence now (returned), or remove one not started yet (None). An ended
    one stays as it is."""
    async with conn.transaction():
        current = await conn.fetchrow(LOCK, silence_id, user_id)
        allowed(current["caller_role"] if current else None, Role.RESPONDER, not_found())
        assert current is not None
        if current["starts_at"] > now:
            await conn.execute(DELETE, silence_id)
            return None
        if current["ends_at"] <= now:
            return current
        return await conn.fetchrow(EXPIRE, silence_id, now)
