"""A text sent back to our SMS number: what it asks, and the answer it gets.

What a person may text (case and spaces ignored, as GoAlert reads them):
- ``3a`` / ``3c`` / ``3e``, also ``ack 3``, ``a 3``, ``close 3``, ``resolve 3``, ``esc 3``,
  ``3 ack``: acknowledge, resolve or escalate (its policy's next step paged now, as key 5 of a
  call) every incident of the message whose reply code is 3 (engine.incidents.sms_codes), as the
  person it paged, through channel_actions.act ("acknowledged via SMS reply");
- ``a`` / ``ack`` / ``c`` / ``close`` / ``e`` / ``escalate`` alone: the same, when exactly one code
  of theirs is open;
- ``STOP`` and Twilio's other opt-out words: the number is not texted again until ``START`` (or
  ``YES``, ``UNSTOP``); ``HELP`` / ``INFO``: the help text.

The sender is the number Twilio names in ``From``, and only a person who verified that number may
act with it. An unknown number, a reply we cannot read and a code of no open message get one short
help text, at most HELP_PER_DAY a day per number (counted in PostgreSQL, sms_help_replies), so an
auto-responder texting us back cannot start a loop; past that, silence. Nothing changes for them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from engine import db
from engine.channels.sms import MAX_BODY, truncate
from engine.errors import MonodutyError
from engine.incidents import channel_actions, sms_codes
from engine.incidents.channel_actions import Action, Outcome
from engine.incidents.keys import plain_title
from engine.oncall import contacts, paging

VIA = "SMS reply"  # the timeline: "acknowledged via SMS reply"
HELP_PER_DAY = 5
HELP_TEXT = (
    "Monoduty: reply with the code of a page, e.g. 3a to acknowledge, 3c to close, 3e to escalate it. "
    "STOP: no more texts to this number, START: texts again."
)
OPTED_IN_TEXT = "Monoduty will text this number again. Reply STOP to stop."
# Twilio's own keywords, matched as it matches them: the whole text, one word, any case.
OPT_OUT_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
OPT_IN_WORDS = frozenset({"start", "yes", "unstop"})
HELP_WORDS = frozenset({"help", "info"})
_ACTIONS = {
    "a": Action.ACKNOWLEDGE,
    "ack": Action.ACKNOWLEDGE,
    "acknowledge": Action.ACKNOWLEDGE,
    "c": Action.RESOLVE,
    "close": Action.RESOLVE,
    "resolve": Action.RESOLVE,
    "e": Action.ESCALATE,
    "esc": Action.ESCALATE,
    "escalate": Action.ESCALATE,
}
_CODE_FIRST = re.compile(r"(\d{1,6})\s*([a-z]+)")
_WORD_FIRST = re.compile(r"([a-z]+)\s*#?\s*(\d{1,6})")
_DONE = {Action.ACKNOWLEDGE: "Acknowledged", Action.RESOLVE: "Resolved", Action.ESCALATE: "Escalated"}

COUNT_HELP = """
INSERT INTO sms_help_replies (phone, day, sent) VALUES ($1, $2, 1)
ON CONFLICT (phone, day) DO UPDATE SET sent = sms_help_replies.sent + 1 WHERE sms_help_replies.sent < $3
RETURNING sent
"""
FORGET_OLD_HELP = "DELETE FROM sms_help_replies WHERE day < $1"


class ReplyKind(StrEnum):
    ACT = "act"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Reply:
    """What a text asks: an action (on a code, or on the sender's one open code when None), or a keyword."""

    kind: ReplyKind
    action: Action | None = None
    code: int | None = None


@dataclass
class Answer:
    """The text to send back (None: none), and what an action left to queue after it committed."""

    text: str | None
    outcome: Outcome = field(default_factory=lambda: Outcome([], [], [], []))


def parse(body: str) -> Reply:
    """What ``body`` asks for; anything else is UNREADABLE."""
    text = " ".join(body.strip().strip("'\"").lower().split()).rstrip(".!")
    if text in OPT_OUT_WORDS:
        return Reply(ReplyKind.OPT_OUT)
    if text in OPT_IN_WORDS:
        return Reply(ReplyKind.OPT_IN)
    if text in HELP_WORDS:
        return Reply(ReplyKind.HELP)
    if text in _ACTIONS:
        return Reply(ReplyKind.ACT, _ACTIONS[text])
    for pattern, code_group, word_group in ((_CODE_FIRST, 1, 2), (_WORD_FIRST, 2, 1)):
        found = pattern.fullmatch(text)
        if found and found.group(word_group) in _ACTIONS:
            return Reply(ReplyKind.ACT, _ACTIONS[found.group(word_group)], int(found.group(code_group)))
    return Reply(ReplyKind.UNREADABLE)


async def receive(conn: db.Connection, phone: str, body: str, now: datetime) -> Answer:
    """Do what a text from ``phone`` asks and say what happened (the caller queues the outcome)."""
    reply = parse(body)
    if reply.kind is ReplyKind.OPT_OUT:
        async with conn.transaction():
            if await contacts.opt_out(conn, phone, now):
                await paging.cancel_pending_to(conn, "SMS", phone, "the number replied STOP")
        return Answer(None)  # the provider confirms a STOP itself, and would refuse our text anyway
    if reply.kind is ReplyKind.OPT_IN:
        return Answer(OPTED_IN_TEXT if await contacts.opt_in(conn, phone) else None)
    if reply.kind is ReplyKind.ACT:
        assert reply.action is not None
        users = await contacts.verified_sms_users(conn, phone)
        target = await _message(conn, phone, reply.code, users) if users else None
        if target is not None:
            delivery_id, user_id = target
            return await _act(conn, delivery_id, user_id, reply.action, now)
        if users and reply.code is not None:
            return await _help(conn, phone, now, f"No open page of yours has the code {reply.code}.")
    return await _help(conn, phone, now)


async def _message(
    conn: db.Connection, phone: str, code: int | None, users: list[uuid.UUID]
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(delivery, person) a reply of one of ``users`` names: its code, or their only open code."""
    if code is None:
        mine = [h for h in await sms_codes.held_codes(conn, phone) if h.user_id in users]
        if len(mine) != 1:
            return None
        code = mine[0].code
    found = await sms_codes.lookup(conn, phone, code)
    return found if found is not None and found[1] in users else None


async def _act(
    conn: db.Connection, delivery_id: uuid.UUID, user_id: uuid.UUID, action: Action, now: datetime
) -> Answer:
    grant = channel_actions.grant_for(delivery_id, user_id, now, frozenset({action}))
    try:
        outcome = await channel_actions.act(conn, grant, action, VIA, now)
    except MonodutyError as exc:  # no longer allowed (left the team, a viewer now)
        return Answer(truncate(f"Not done: {exc.message}", MAX_BODY))
    incidents = await channel_actions.incidents_of(conn, delivery_id)
    return Answer(describe(action, incidents, outcome), outcome)


def describe(action: Action, incidents: Sequence[dict[str, object]], outcome: Outcome) -> str:
    """ "Acknowledged #42 DB down", "Resolved #41, #43. Already resolved: #42", "Escalated #42 DB
    down, next step paged", as one short text."""
    changed = [i for i in incidents if i["id"] in outcome.changed]
    parts = [f"{_DONE[action]} {_names(changed)}"] if changed else []
    if changed and action is Action.ESCALATE:
        parts[0] += ", next step paged"
    for status in ("acknowledged", "resolved"):
        alike = [i for i in incidents if i["id"] in outcome.unchanged and i["status"] == status]
        if alike:
            parts.append(f"Already {status}: {_names(alike)}")
    # Still triggered and not escalated: its policy has no step to run (or it has no policy).
    stuck = [i for i in incidents if i["id"] in outcome.unchanged and i["status"] == "triggered"]
    if stuck:
        parts.append(f"Not escalated, no next step: {_names(stuck)}")
    return truncate(". ".join(parts) or "Nothing to do", MAX_BODY)


def _names(incidents: Sequence[dict[str, object]]) -> str:
    if len(incidents) == 1:
        return f"#{incidents[0]['number']} {plain_title(str(incidents[0]['title']))}"
    return ", ".join(f"#{i['number']}" for i in incidents)


async def _help(conn: db.Connection, phone: str, now: datetime, lead: str = "") -> Answer:
    """The help text, while this number has had fewer than HELP_PER_DAY today (UTC); then none."""
    day = now.astimezone(UTC).date()
    async with conn.transaction():
        await conn.execute(FORGET_OLD_HELP, day)
        counted = await conn.fetchval(COUNT_HELP, phone, day, HELP_PER_DAY)
    if counted is None:
        return Answer(None)
    return Answer(f"{lead} {HELP_TEXT}" if lead else HELP_TEXT)
