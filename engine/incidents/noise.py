"""Noise caps: what keeps a flood of distinct problems from becoming a flood of pages.

- **Overflow.** A webhook with ``max_open`` incidents open (MONODUTY_MAX_OPEN_INCIDENTS) opens no
  more: an alert with a new key joins the webhook's one overflow incident ("N more incidents on
  <webhook>", N = the distinct keys it took), which pages once, when it opens.
- **Storm.** More than ``storm_threshold`` incidents opened on one webhook within
  ``storm_seconds``: each further one still opens (it is real and can be acknowledged and resolved)
  but its page is held in the webhook's digest, which ``engine.incidents.digests`` pages once,
  ``digest_seconds`` after its first held page, for all of them.

- **Repeats told to programs.** A repeat that pages nobody sends its incident's ``alert.received``
  notice (WEBHOOK), at most ``storm_threshold`` per incident within ``storm_seconds`` (by the
  alerts' received time); past that, the repeat is only counted in the incident (``alert_count``,
  timeline), so a flood of one key makes at most 20 POSTs a minute per target, not one per alert.

All three decisions are counts in PostgreSQL taken inside ``record_alert``'s transaction, after it has
locked the webhook row: every alert of one webhook is stored under that lock, one at a time, so two
workers can never both see room for the 200th incident. System incidents (keys under
``SYSTEM_PREFIX``: the overflow itself, a refused payload, a heartbeat) are neither counted nor capped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine import db
from engine.alerts.payloads import ParsedAlert
from engine.channels.base import SEVERITIES
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event

SYSTEM_PREFIX = "monoduty:"
OVERFLOW_KEY = SYSTEM_PREFIX + "overflow"
REFUSED_KEY = SYSTEM_PREFIX + "payload-too-large"
HEARTBEAT_PREFIX = SYSTEM_PREFIX + "heartbeat:"  # + the heartbeat's id: its late, failed and back alerts
SYSTEM_FORMAT = "monoduty"  # ParsedAlert.format of an alert Monoduty makes itself


@dataclass(frozen=True)
class Caps:
    max_open: int = 200
    storm_threshold: int = 20
    storm_seconds: float = 60.0
    digest_seconds: float = 60.0


DEFAULT_CAPS = Caps()


def is_system(key: str | None) -> bool:
    return key is not None and key.startswith(SYSTEM_PREFIX)


_NOT_SYSTEM = "(dedup_key IS NULL OR dedup_key NOT LIKE 'monoduty:%')"
OPEN_COUNT = f"""
SELECT count(*) FROM incidents WHERE webhook_id = $1 AND status <> 'resolved' AND {_NOT_SYSTEM}
"""
OPENED_SINCE = f"SELECT count(*) FROM incidents WHERE webhook_id = $1 AND created_at > $2 AND {_NOT_SYSTEM}"
ADD_OVERFLOW_KEY = """
INSERT INTO incident_overflow_keys (incident_id, dedup_key) VALUES ($1, $2) ON CONFLICT DO NOTHING
RETURNING dedup_key
"""
COUNT_OVERFLOW_KEY = """
UPDATE incidents SET overflow_keys = overflow_keys + 1,
    title = (overflow_keys + 1)
        || CASE WHEN overflow_keys = 0 THEN ' more incident on ' ELSE ' more incidents on ' END || $2
WHERE id = $1
"""
# The overflow keeps its own text and pages only when it opens; it takes the loudest severity quietly.
JOIN_OVERFLOW = """
UPDATE incidents SET alert_count = alert_count + 1, last_alert_at = greatest(last_alert_at, $2),
    severity = CASE WHEN array_position($4::text[], $3) < array_position($4::text[], severity)
        THEN $3 ELSE severity END
WHERE id = $1
"""
IN_OVERFLOW = """
SELECT k.incident_id FROM incident_overflow_keys k JOIN incidents i ON i.id = k.incident_id
WHERE i.webhook_id = $1 AND i.dedup_key = 'monoduty:overflow' AND i.status <> 'resolved' AND k.dedup_key = $2
"""
# FOR UPDATE: the sweep that sends a digest holds this lock; once it has committed, the row no
# longer matches (sent_at set) and a new digest opens, so no incident joins a digest already sent.
OPEN_DIGEST = "SELECT id FROM digests WHERE webhook_id = $1 AND sent_at IS NULL FOR UPDATE"
NEW_DIGEST = "INSERT INTO digests (id, webhook_id, opened_at, due_at) VALUES ($1, $2, $3, $4)"
HOLD = "UPDATE incidents SET digest_id = $2 WHERE id = $1"
# lifecycle.DeliveryKind.ALERT_RECEIVED; deliveries_incident_idx finds the incident's few deliveries.
RECEIVED_SINCE = """
SELECT count(DISTINCT d.alert_id) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE d.incident_id = $1 AND d.kind = 'alert_received' AND a.received_at > $2
"""


async def at_cap(conn: db.Connection, webhook_id: uuid.UUID, caps: Caps) -> bool:
    """Whether the webhook has its most open incidents already (the caller holds its row lock)."""
    return int(await conn.fetchval(OPEN_COUNT, webhook_id)) >= caps.max_open


def overflow_alert(parsed: ParsedAlert, webhook_name: str, caps: Caps) -> ParsedAlert:
    """What the overflow incident says when it opens (its title then counts the keys it takes)."""
    return ParsedAlert(
        title=f"0 more incidents on {webhook_name}",
        message=(
            f"{webhook_name} has {caps.max_open} open incidents (MONODUTY_MAX_OPEN_INCIDENTS). "
            "Alerts with new keys join this incident instead of opening and paging their own, "
            f"until it is resolved. The first: {parsed.title}"
        ),
        severity=parsed.severity,
        source=parsed.source,
        format=SYSTEM_FORMAT,
        fingerprint=OVERFLOW_KEY,
        resolved=False,
        details={},
    )


async def join_overflow(
    conn: db.Connection,
    incident_id: uuid.UUID,
    webhook_name: str,
    alert_id: uuid.UUID,
    parsed: ParsedAlert,
    key: str | None,
    at: datetime,
    *,
    opened: bool,
) -> None:
    """Count the alert's key in the overflow incident (its title says how many it holds)."""
    if not opened:
        await conn.execute(JOIN_OVERFLOW, incident_id, at, parsed.severity, list(SEVERITIES))
    # Without a key (dedupBy "none") every alert is a problem of its own.
    if await conn.fetchval(ADD_OVERFLOW_KEY, incident_id, key or f"alert:{alert_id}") is not None:
        await conn.execute(COUNT_OVERFLOW_KEY, incident_id, webhook_name)
    if not opened:
        await add_event(
            conn, incident_id, EventKind.ALERT, Actor.SENDER, at, text=parsed.title, alert_id=alert_id
        )


async def overflow_of_key(conn: db.Connection, webhook_id: uuid.UUID, key: str) -> uuid.UUID | None:
    """The open overflow incident that took ``key``, if one did."""
    return await conn.fetchval(IN_OVERFLOW, webhook_id, key)


async def hold_if_storm(
    conn: db.Connection,
    webhook_id: uuid.UUID,
    incident_id: uuid.UUID,
    alert_id: uuid.UUID,
    now: datetime,
    caps: Caps,
) -> bool:
    """Hold the page of an incident just opened when it is past the storm threshold; True if held."""
    opened = int(await conn.fetchval(OPENED_SINCE, webhook_id, now - timedelta(seconds=caps.storm_seconds)))
    if opened <= caps.storm_threshold:
        return False
    digest_id = await conn.fetchval(OPEN_DIGEST, webhook_id)
    if digest_id is None:
        digest_id = uuid.uuid4()
        await conn.execute(
            NEW_DIGEST, digest_id, webhook_id, now, now + timedelta(seconds=caps.digest_seconds)
        )
    await conn.execute(HOLD, incident_id, digest_id)
    text = f"{opened} new incidents in {caps.storm_seconds:g} s: the page waits for the digest"
    await add_event(conn, incident_id, EventKind.PAGE_HELD, Actor.SYSTEM, now, text=text, alert_id=alert_id)
    return True


async def received_notice_due(conn: db.Connection, incident_id: uuid.UUID, at: datetime, caps: Caps) -> bool:
    """Whether a repeat received at ``at`` may send its ``alert.received`` notice: fewer than
    ``storm_threshold`` of the incident's were within ``storm_seconds`` before it (the caller holds
    the webhook's row lock, so two repeats cannot both take the last one)."""
    since = at - timedelta(seconds=caps.storm_seconds)
    return int(await conn.fetchval(RECEIVED_SINCE, incident_id, since)) < caps.storm_threshold
