"""What a heartbeat's incident says: alerts of Monoduty's own, as engine.alerts.refused makes one.

They go the alert path (``engine.alerts.lifecycle.record_alert``) under the heartbeat's own key,
``monoduty:heartbeat:<id>``: a late (or failed) heartbeat opens the webhook's incident of that key
and pages through its escalation policy or its targetChannels; the next good ping resolves it
("Heartbeat <name> is back"), so one lateness is one incident. A fail while it is open joins it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from engine.alerts.payloads import ParsedAlert
from engine.incidents.noise import HEARTBEAT_PREFIX, SYSTEM_FORMAT

SEVERITY = "error"  # as an alert that names none: a missed page is worse than a loud one
LOG_EXCERPT = 2000  # characters of a /fail ping's body the incident's message quotes


class AlertKind(StrEnum):
    LATE = "late"  # no ping within the grace after the one expected
    UNFINISHED = "unfinished"  # a /start without a finish within the grace
    FAILED = "failed"  # a /fail ping
    BACK = "back"  # the first good ping after one of those: resolves the incident


def heartbeat_key(heartbeat_id: uuid.UUID) -> str:
    return f"{HEARTBEAT_PREFIX}{heartbeat_id}"


def ago(span: timedelta) -> str:
    """A span as a person says it: "45 s", "12 min", "3 h", "4 days"."""
    seconds = max(int(span.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 120 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment is not None else "never"


def heartbeat_alert(
    kind: AlertKind,
    heartbeat_id: uuid.UUID,
    name: str,
    now: datetime,
    *,
    last_ping_at: datetime | None,
    expected_at: datetime | None = None,
    started_at: datetime | None = None,
    down_since: datetime | None = None,
    log: str = "",
) -> ParsedAlert:
    """The alert of one change of a heartbeat (``kind``) at ``now``."""
    last = f"last ping {ago(now - last_ping_at)} ago" if last_ping_at is not None else "no ping yet"
    if kind is AlertKind.LATE:
        title = f"Heartbeat {name} is late ({last})"
        message = (
            f"A ping was expected at {_at(expected_at)} and none came within its grace; the last one "
            f"was at {_at(last_ping_at)}. The next ping resolves this incident."
        )
    elif kind is AlertKind.UNFINISHED:
        started = ago(now - started_at) if started_at is not None else "a while"
        title = f"Heartbeat {name} is late (a run started {started} ago has not finished)"
        message = (
            f"A run began at {_at(started_at)} (a /start ping) and neither finished nor failed within "
            "its grace. The next ping resolves this incident."
        )
    elif kind is AlertKind.FAILED:
        title = f"Heartbeat {name} failed"
        message = f"A /fail ping at {_at(now)}. The next good ping resolves this incident."
        if log:
            message += "\n\nIts log:\n" + log[:LOG_EXCERPT]
    else:
        down = f" after {ago(now - down_since)}" if down_since is not None else ""
        title = f"Heartbeat {name} is back"
        message = f"A ping at {_at(now)}{down}."
    return ParsedAlert(
        title=title,
        message=message,
        severity="info" if kind is AlertKind.BACK else SEVERITY,
        source=f"heartbeat {name}",
        format=SYSTEM_FORMAT,
        fingerprint=heartbeat_key(heartbeat_id),
        resolved=kind is AlertKind.BACK,
        details={"heartbeat_id": str(heartbeat_id), "change": kind.value},
        action="resolve" if kind is AlertKind.BACK else "trigger",
    )
