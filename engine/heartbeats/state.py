"""What happens to a heartbeat: the state machine of pings, sweeps, pauses and resumes, in plain code.

The row holds the state (``State``); each function answers the new one and the alert to raise, if
any. The callers run them on the row they hold locked (FOR UPDATE), so the changes of one heartbeat
happen one at a time, in order, and each alert follows the one before (late, then back).

- a good ping: up; the next ping expected a period (or the next cron time) later; if it was down,
  the alert "back" resolves its incident;
- ``/start``: a run began; it is down if it has not finished (a good or a /fail ping) within the
  grace, even before the next ping would be expected;
- ``/fail``: down at once (the alert "failed"), unless it is down already;
- the sweep: an up heartbeat past ``due_at`` (expected time + grace) goes down (the alert "late").

A new heartbeat is not checked before its first ping (it may be made before its job is set up);
a paused one keeps its pings' log but is not checked. Resuming checks it again from that moment.
While its webhook is paused a heartbeat raises nothing: its pings still move its schedule (so that
it is not late once the webhook is resumed), but a /fail or a return opens or resolves no incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from engine.heartbeats import HeartbeatStatus, PingKind
from engine.heartbeats.alerts import AlertKind
from engine.heartbeats.timing import Timing

# A heartbeats row (asyncpg.Record) or a plain mapping with its columns.
Row = Mapping[str, Any] | asyncpg.Record


@dataclass(frozen=True)
class State:
    """The columns of a heartbeat that change (``status`` is a stored one: never ``late``)."""

    status: HeartbeatStatus
    last_ping_at: datetime | None = None
    last_ping_kind: PingKind | None = None
    started_at: datetime | None = None
    expected_at: datetime | None = None
    due_at: datetime | None = None
    down_since: datetime | None = None

    @classmethod
    def of(cls, row: Row) -> State:
        kind = row["last_ping_kind"]
        return cls(
            status=HeartbeatStatus(row["status"]),
            last_ping_at=row["last_ping_at"],
            last_ping_kind=PingKind(kind) if kind is not None else None,
            started_at=row["started_at"],
            expected_at=row["expected_at"],
            due_at=row["due_at"],
            down_since=row["down_since"],
        )


@dataclass(frozen=True)
class Change:
    state: State
    alert: AlertKind | None = None


def timing_of(row: Row) -> Timing:
    return Timing(row["period_seconds"], row["cron"], row["time_zone"], row["grace_seconds"])


def _checked(timing: Timing, state: State) -> State:
    """Up, due when its grace runs out: after the expected ping, or after a run began."""
    assert state.expected_at is not None
    due = state.expected_at + timing.grace
    if state.started_at is not None:
        due = min(due, state.started_at + timing.grace)
    return replace(state, status=HeartbeatStatus.UP, due_at=due)


def on_ping(timing: Timing, state: State, kind: PingKind, now: datetime, *, quiet: bool = False) -> Change:
    """``quiet``: its webhook is paused, so the ping moves the schedule but opens or resolves nothing."""
    change = _on_ping(timing, state, kind, now)
    if not quiet or change.alert is None:
        return change
    if change.alert is AlertKind.FAILED:  # a finished run, as far as the schedule goes
        return Change(_checked(timing, replace(change.state, down_since=state.down_since)))
    return Change(
        replace(change.state, status=HeartbeatStatus.DOWN, down_since=state.down_since, due_at=None)
    )


def _on_ping(timing: Timing, state: State, kind: PingKind, now: datetime) -> Change:
    pinged = replace(state, last_ping_at=now, last_ping_kind=kind)
    if state.status is HeartbeatStatus.PAUSED:
        return Change(pinged)
    if kind is PingKind.START:
        if state.status is HeartbeatStatus.DOWN:  # its incident stays open until a good ping
            return Change(replace(pinged, started_at=now))
        expected = state.expected_at if state.status is HeartbeatStatus.UP else None
        started = replace(pinged, started_at=now, expected_at=expected or timing.expected_after(now))
        return Change(_checked(timing, started))
    finished = replace(pinged, started_at=None, expected_at=timing.expected_after(now))
    if kind is PingKind.FAIL:
        if state.status is HeartbeatStatus.DOWN:
            return Change(finished)
        down = replace(finished, status=HeartbeatStatus.DOWN, down_since=now, due_at=None)
        return Change(down, AlertKind.FAILED)
    up = _checked(timing, replace(finished, down_since=None))
    return Change(up, AlertKind.BACK if state.status is HeartbeatStatus.DOWN else None)


def on_sweep(timing: Timing, state: State, now: datetime) -> Change | None:
    """Down, if it is up and past due; None: nothing to do (a ping came meanwhile)."""
    if state.status is not HeartbeatStatus.UP or state.due_at is None or state.due_at > now:
        return None
    unfinished = state.started_at is not None and state.started_at + timing.grace <= now
    down = replace(state, status=HeartbeatStatus.DOWN, down_since=now, due_at=None)
    return Change(down, AlertKind.UNFINISHED if unfinished else AlertKind.LATE)


def on_pause(state: State) -> State:
    """Not checked; an open incident stays open (the next good ping after resuming resolves it)."""
    return replace(state, status=HeartbeatStatus.PAUSED, started_at=None, due_at=None)


def on_resume(timing: Timing, state: State, now: datetime) -> State:
    """Checked again from ``now``: a ping is expected a period (or the next cron time) later; one
    still down stays so until it pings; one never pinged is new again."""
    if state.status is not HeartbeatStatus.PAUSED:
        return state
    if state.down_since is not None:
        return replace(state, status=HeartbeatStatus.DOWN, due_at=None)
    if state.last_ping_at is None:
        return replace(state, status=HeartbeatStatus.NEW, expected_at=None, due_at=None)
    return _checked(timing, replace(state, expected_at=timing.expected_after(now)))


def on_reschedule(timing: Timing, state: State, now: datetime) -> State:
    """A changed period, cron or grace counts from ``now`` for an up heartbeat."""
    if state.status is not HeartbeatStatus.UP:
        return state
    return _checked(timing, replace(state, expected_at=timing.expected_after(now)))


def shown_status(state: State, now: datetime) -> HeartbeatStatus:
    """``late`` for an up heartbeat whose expected ping is overdue; else the stored status."""
    overdue = state.expected_at is not None and now >= state.expected_at
    return HeartbeatStatus.LATE if state.status is HeartbeatStatus.UP and overdue else state.status
