"""Heartbeats (dead-man's switches): a ping expected on a webhook; one that does not come opens an
incident of the webhook, which pages through its escalation policy or its targetChannels exactly as
an alert would (it is one: ``engine.heartbeats.alerts`` makes it, ``record_alert`` stores it).

    timing    durations ("5m"), and cron times in a zone across DST (croniter)
    state     what a ping, a sweep, a pause or a resume does to a heartbeat (plain code)
    alerts    what its incident says: "Heartbeat <name> is late (last ping 3 h ago)", "... is back"
    store     its row: read locked, state written back
    raised    its alerts stored through the alert path, then their pages queued (once)
    pings     the ping route's work: the token, the same-second rule (Redis), the stored ping
    checks    the workers' sweep: due heartbeats go down, and Monoduty's own outage is no lateness
    crud      the API's create, read, change, pause, resume and delete, by the webhook's team roles

Status ``new`` (never pinged: not checked yet), ``up``, ``late`` (shown, not stored: the expected
ping is overdue but the grace has not run out), ``down`` (the grace ran out, or a /fail: its
incident is open until the next ping), ``paused`` (not checked).
"""

from __future__ import annotations

from enum import StrEnum


class HeartbeatStatus(StrEnum):
    NEW = "new"
    UP = "up"
    LATE = "late"  # shown only: an up heartbeat past its expected time, within its grace
    DOWN = "down"
    PAUSED = "paused"


class PingKind(StrEnum):
    """What a ping says: a run finished well (the plain URL), began (``/start``) or failed (``/fail``)."""

    SUCCESS = "success"
    START = "start"
    FAIL = "fail"
