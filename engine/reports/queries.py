"""The SQL behind reports. Every query takes ($1 user_id, $2 start, $3 end) and skips test sends;
a report covers the webhooks of every team the user belongs to (any role).

Definitions shared by every format:
- a *call* is a non-test alert received in [start, end);
- *latency* of a delivery is from its creation (the alert being fanned out) to its final outcome;
  percentiles use delivered ones only;
- a *cancelled* delivery is a page never sent because its incident was acknowledged or resolved
  first: counted among deliveries, in its own column, and left out of the retry rate;
- a *receipt* is what the provider said became of a delivery after taking it (engine.alerts.receipts):
  the delivered rate is delivered receipts out of delivered and undelivered ones (None for a
  channel whose provider confirms nothing: email, push), time to delivered runs from creation to
  reaching the person (a call: when it was answered), and the answer rate is the delivered rate of
  calls; receipts leave the delivery's status, and so every other figure, as it was;
- a *page* is a delivery no call made (it has no alert): an escalation policy's page or bundle of
  a person or a step's channel target, a person's RESOLVED or ACKNOWLEDGED notice, a maintenance window's held
  page, a storm's digest; it belongs to the range it was created in, and to the webhook of its
  incident (or digest). ``performance`` and the ``detailed`` report's receipts count deliveries
  of calls and pages alike; ``detailed`` lists the pages after the calls (``page_rows``);
- an incident is *opened* at its first alert; time to acknowledge / resolve runs from there;
- rates are percentages with two decimals, None when there is nothing to divide by.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

from engine import db
from engine.masking import mask_target
from engine.reports.ranges import DateRange
from engine.teams.membership import TEAMS_OF

# The caller's webhooks: those of every team of user $1.
WEBHOOKS_OF = f"(SELECT w.id FROM webhooks w WHERE w.team_id IN {TEAMS_OF.format(user='$1')})"
IN_RANGE = f"a.webhook_id IN {WEBHOOKS_OF} AND NOT a.is_test AND a.received_at >= $2 AND a.received_at < $3"

CALLS_PER_DAY = f"""
SELECT (a.received_at AT TIME ZONE 'UTC')::date AS day, count(*) AS calls
FROM alerts a WHERE {IN_RANGE} GROUP BY 1 ORDER BY 1
"""
SUMMARY = f"""
SELECT w.id AS webhook_id, w.name, w.alias,
    count(a.id) AS calls,
    count(a.id) FILTER (WHERE a.status = 'successful') AS successful,
    count(a.id) FILTER (WHERE a.status = 'failed') AS failed,
    count(a.id) FILTER (WHERE a.status = 'pending') AS pending
FROM webhooks w
LEFT JOIN alerts a ON a.webhook_id = w.id AND NOT a.is_test AND a.received_at >= $2 AND a.received_at < $3
WHERE w.team_id IN {TEAMS_OF.format(user="$1")}
GROUP BY w.id ORDER BY w.created_at, w.id
"""
# The pages in range (see the module docstring), by their incident's webhook or their digest's:
# each branch reaches deliveries through an index (deliveries_incident_idx, deliveries_digest_idx).
_PAGES = """
SELECT {cols} FROM incidents i JOIN deliveries d ON d.incident_id = i.id
WHERE i.webhook_id IN {webhooks} AND d.alert_id IS NULL AND d.created_at >= $2 AND d.created_at < $3
UNION ALL
SELECT {cols} FROM digests g JOIN deliveries d ON d.digest_id = g.id
WHERE g.webhook_id IN {webhooks} AND d.alert_id IS NULL AND d.incident_id IS NULL
    AND d.created_at >= $2 AND d.created_at < $3
"""
PAGES_IN_RANGE = _PAGES.format(cols="d.*", webhooks=WEBHOOKS_OF)
# Every delivery the figures cover: those of the calls in range, then the pages in range.
EVERY_DELIVERY = f"""(
SELECT d.* FROM alerts a JOIN deliveries d ON d.alert_id = a.id WHERE {IN_RANGE}
UNION ALL
{PAGES_IN_RANGE}
) d"""
DELIVERIES_PER_CHANNEL = f"""
SELECT a.webhook_id, d.channel, count(*) AS deliveries
FROM alerts a JOIN deliveries d ON d.alert_id = a.id
WHERE {IN_RANGE} GROUP BY a.webhook_id, d.channel
"""
LATENCY_MS = "(extract(epoch FROM d.finished_at - d.created_at) * 1000)"
TO_DELIVERED_MS = "(extract(epoch FROM d.reached_at - d.created_at) * 1000)"
_DELIVERY_COLUMNS = f"""d.channel, d.target, d.status, d.attempts,
    round({LATENCY_MS}::numeric, 1) AS latency_ms, d.receipt_status, d.provider_status, d.receipt_error,
    d.call_seconds, round({TO_DELIVERED_MS}::numeric, 1) AS time_to_delivered_ms,
    d.kind, d.created_at AS sent_at"""
DETAILED = f"""
SELECT a.id AS alert_id, a.received_at, w.name AS webhook, a.title, a.severity, a.source,
    a.status AS alert_status, {_DELIVERY_COLUMNS}, '#' || i.number AS incidents
FROM alerts a JOIN webhooks w ON w.id = a.webhook_id LEFT JOIN deliveries d ON d.alert_id = a.id
    LEFT JOIN incidents i ON i.id = a.incident_id
WHERE {IN_RANGE}
ORDER BY a.received_at, a.id, d.channel, d.target
"""
# The pages in range, oldest first: what each was about (its incident; a bundle's, those its text
# named; a digest's, those it held), as "#41 #42".
PAGES_DETAILED = f"""
SELECT NULL::uuid AS alert_id, NULL::timestamptz AS received_at, w.name AS webhook,
    coalesce(i.title, g.title) AS title, coalesce(i.severity, g.severity) AS severity, NULL AS source,
    NULL AS alert_status, {_DELIVERY_COLUMNS},
    coalesce(
        (SELECT string_agg('#' || n.number, ' ' ORDER BY n.number) FROM incidents n
         WHERE n.id IN (SELECT p.incident_id FROM pages p WHERE p.delivery_id = d.id AND p.status = 'sent')),
        (SELECT string_agg('#' || n.number, ' ' ORDER BY n.number) FROM incidents n
         WHERE d.digest_id IS NOT NULL AND n.digest_id = d.digest_id),
        '#' || i.number) AS incidents
FROM deliveries d LEFT JOIN incidents i ON i.id = d.incident_id LEFT JOIN digests g ON g.id = d.digest_id
    JOIN webhooks w ON w.id = coalesce(i.webhook_id, g.webhook_id)
WHERE d.id IN ({_PAGES.format(cols="d.id", webhooks=WEBHOOKS_OF)})
ORDER BY d.created_at, d.id
"""
# Incidents opened (first alert) in the range. Who acknowledged/resolved: a user's email, or
# "sender" / "system" (engine.incidents.Actor); "user" when that user was deleted since.
_BY = "CASE i.{what}_by WHEN 'user' THEN coalesce({who}.email, 'user') ELSE i.{what}_by END"
_SECONDS = "round(extract(epoch FROM i.{what}_at - i.first_alert_at)::numeric, 1)"
INCIDENTS_IN_RANGE = (
    f"i.team_id IN {TEAMS_OF.format(user='$1')} AND i.first_alert_at >= $2 AND i.first_alert_at < $3"
)
INCIDENTS = f"""
SELECT i.id AS incident_id, i.number, w.name AS webhook, i.title, i.severity, i.status, i.source,
    i.alert_count, i.first_alert_at AS opened_at,
    i.acknowledged_at, {_SECONDS.format(what="acknowledged")} AS seconds_to_acknowledge,
    {_BY.format(what="acknowledged", who="ack")} AS acknowledged_by,
    i.resolved_at, {_SECONDS.format(what="resolved")} AS seconds_to_resolve,
    {_BY.format(what="resolved", who="res")} AS resolved_by
FROM incidents i JOIN webhooks w ON w.id = i.webhook_id
    LEFT JOIN users ack ON ack.id = i.acknowledged_by_user
    LEFT JOIN users res ON res.id = i.resolved_by_user
WHERE {INCIDENTS_IN_RANGE}
ORDER BY i.first_alert_at, i.number
"""
# MTTA / MTTR as PagerDuty counts them: means over the incidents opened in the range that were
# acknowledged / resolved; one still open adds to the count of incidents, not to the mean.
# Per webhook plus the all-webhooks row (webhook_id NULL) from the same scan.
INCIDENT_TIMES = f"""
SELECT i.webhook_id, count(*) AS incidents,
    count(i.acknowledged_at) AS acknowledged,
    count(i.resolved_at) AS resolved,
    round(avg(extract(epoch FROM i.acknowledged_at - i.first_alert_at))::numeric, 1) AS mtta,
    round(avg(extract(epoch FROM i.resolved_at - i.first_alert_at))::numeric, 1) AS mttr
FROM incidents i WHERE {INCIDENTS_IN_RANGE}
GROUP BY GROUPING SETS ((i.webhook_id), ())
"""
# The same incidents, per UTC day of their first alert, with that day's MTTA and MTTR.
INCIDENTS_PER_DAY = f"""
SELECT (i.first_alert_at AT TIME ZONE 'UTC')::date AS day, count(*) AS incidents,
    round(avg(extract(epoch FROM i.acknowledged_at - i.first_alert_at))::numeric, 1) AS mtta,
    round(avg(extract(epoch FROM i.resolved_at - i.first_alert_at))::numeric, 1) AS mttr
FROM incidents i WHERE {INCIDENTS_IN_RANGE}
GROUP BY 1 ORDER BY 1
"""
_PERCENTILE = (
    "round((percentile_cont({q}) WITHIN GROUP (ORDER BY {ms})"
    " FILTER (WHERE d.status = 'delivered'))::numeric, 1)"
)
# What the providers reported, per group of deliveries (see the module docstring).
RECEIPT_FIGURES = f"""count(*) FILTER (WHERE d.receipt_status = 'delivered') AS receipts_delivered,
    count(*) FILTER (WHERE d.receipt_status = 'undelivered') AS receipts_undelivered,
    count(*) FILTER (WHERE d.channel = 'CALL' AND d.receipt_status = 'delivered') AS answered,
    count(*) FILTER (WHERE d.channel = 'CALL' AND d.receipt_status = 'undelivered') AS not_answered,
    round((percentile_cont(0.5) WITHIN GROUP (ORDER BY {TO_DELIVERED_MS})
           FILTER (WHERE d.receipt_status = 'delivered'))::numeric, 1) AS to_delivered_p50_ms"""
# One row per channel plus the all-channels row (channel NULL) from the same scan.
RECEIPTS = f"""
SELECT d.channel, {RECEIPT_FIGURES}
FROM {EVERY_DELIVERY}
GROUP BY GROUPING SETS ((d.channel), ())
ORDER BY d.channel NULLS LAST
"""
PERFORMANCE = f"""
SELECT d.channel, count(*) AS deliveries, {RECEIPT_FIGURES},
    count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
    count(*) FILTER (WHERE d.status = 'failed') AS failed,
    count(*) FILTER (WHERE d.status = 'pending') AS pending,
    count(*) FILTER (WHERE d.status = 'cancelled') AS cancelled,
    count(*) FILTER (WHERE d.attempts > 1 AND d.status <> 'cancelled') AS retried,
    {_PERCENTILE.format(q=0.5, ms=LATENCY_MS)} AS p50_ms,
    {_PERCENTILE.format(q=0.95, ms=LATENCY_MS)} AS p95_ms,
    {_PERCENTILE.format(q=0.99, ms=LATENCY_MS)} AS p99_ms
FROM {EVERY_DELIVERY}
GROUP BY GROUPING SETS ((d.channel), ())
ORDER BY d.channel NULLS LAST
"""
BUSIEST_HOURS = f"""
SELECT extract(hour FROM a.received_at AT TIME ZONE 'UTC')::int AS hour, count(*) AS calls
FROM alerts a WHERE {IN_RANGE}
GROUP BY 1 ORDER BY calls DESC, hour LIMIT $4
"""


def rate(part: int, whole: int) -> float | None:
    """A percentage with two decimals; None when there is nothing to divide by."""
    return round(100 * part / whole, 2) if whole else None


def _float(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _args(user_id: uuid.UUID, span: DateRange) -> tuple[Any, ...]:
    return (user_id, span.start, span.end)


async def calls_per_day(conn: db.Connection, user_id: uuid.UUID, span: DateRange) -> list[dict[str, Any]]:
    """Every day of the range, zeros included, for the chart."""
    counts: dict[date, int] = {
        r["day"]: r["calls"] for r in await conn.fetch(CALLS_PER_DAY, *_args(user_id, span))
    }
    return [{"date": day, "calls": counts.get(day, 0)} for day in span.each_day()]


async def incidents_per_day(conn: db.Connection, user_id: uuid.UUID, span: DateRange) -> list[dict[str, Any]]:
    """Every day of the range: incidents opened, and their MTTA / MTTR in seconds (None: none
    acknowledged / resolved), as ``INCIDENT_TIMES`` counts them."""
    found = {r["day"]: r for r in await conn.fetch(INCIDENTS_PER_DAY, *_args(user_id, span))}
    days = []
    for day in span.each_day():
        r = found.get(day)
        days.append(
            {
                "date": day,
                "incidents": r["incidents"] if r else 0,
                "mtta_seconds": _float(r["mtta"]) if r else None,
                "mttr_seconds": _float(r["mttr"]) if r else None,
            }
        )
    return days


async def summary(conn: db.Connection, user_id: uuid.UUID, span: DateRange) -> dict[str, Any]:
    """Per webhook and in total: calls, outcomes, success rate, deliveries per channel, and the
    incidents opened with their MTTA and MTTR (seconds)."""
    per_channel: dict[uuid.UUID, dict[str, int]] = {}
    for r in await conn.fetch(DELIVERIES_PER_CHANNEL, *_args(user_id, span)):
        per_channel.setdefault(r["webhook_id"], {})[r["channel"]] = r["deliveries"]
    times = {r["webhook_id"]: _times(r) for r in await conn.fetch(INCIDENT_TIMES, *_args(user_id, span))}
    webhooks = []
    total: dict[str, Any] = {"calls": 0, "successful": 0, "failed": 0, "pending": 0, "deliveries": {}}
    for r in await conn.fetch(SUMMARY, *_args(user_id, span)):
        channels = per_channel.get(r["webhook_id"], {})
        counts = {k: r[k] for k in ("calls", "successful", "failed", "pending")}
        webhooks.append(
            {
                "webhook_id": r["webhook_id"],
                "name": r["name"],
                "alias": r["alias"],
                **counts,
                "success_rate": rate(r["successful"], r["successful"] + r["failed"]),
                "deliveries": dict(sorted(channels.items())),
                **times.get(r["webhook_id"], _NO_INCIDENTS),
            }
        )
        for k, v in counts.items():
            total[k] += v
        for channel, n in channels.items():
            total["deliveries"][channel] = total["deliveries"].get(channel, 0) + n
    total["success_rate"] = rate(total["successful"], total["successful"] + total["failed"])
    total["deliveries"] = dict(sorted(total["deliveries"].items()))
    total.update(times.get(None, _NO_INCIDENTS))
    return {"webhooks": webhooks, "total": total}


_NO_INCIDENTS: dict[str, Any] = {
    "incidents": 0,
    "incidents_acknowledged": 0,
    "incidents_resolved": 0,
    "mtta_seconds": None,
    "mttr_seconds": None,
}


def _times(r: Any) -> dict[str, Any]:
    return {
        "incidents": r["incidents"],
        "incidents_acknowledged": r["acknowledged"],
        "incidents_resolved": r["resolved"],
        "mtta_seconds": _float(r["mtta"]),
        "mttr_seconds": _float(r["mttr"]),
    }


async def detailed_rows(
    conn: db.Connection, user_id: uuid.UUID, span: DateRange
) -> AsyncIterator[dict[str, Any]]:
    """One row per delivery (an alert without deliveries gives one row with empty delivery fields),
    read through a server-side cursor: call inside a transaction."""
    async for r in db.stream(conn, DETAILED, *_args(user_id, span)):
        yield {
            **dict(r),
            "target": mask_target(r["target"]) if r["target"] is not None else None,
            "latency_ms": _float(r["latency_ms"]),
            "time_to_delivered_ms": _float(r["time_to_delivered_ms"]),
        }


async def page_rows(
    conn: db.Connection, user_id: uuid.UUID, span: DateRange
) -> AsyncIterator[dict[str, Any]]:
    """One row per page in the range (no alert: the alert fields are empty, ``incidents`` says
    what it was about), oldest first, through a server-side cursor: call inside a transaction."""
    async for r in db.stream(conn, PAGES_DETAILED, *_args(user_id, span)):
        yield {
            **dict(r),
            "target": mask_target(r["target"]),
            "latency_ms": _float(r["latency_ms"]),
            "time_to_delivered_ms": _float(r["time_to_delivered_ms"]),
        }


async def incident_rows(
    conn: db.Connection, user_id: uuid.UUID, span: DateRange
) -> AsyncIterator[dict[str, Any]]:
    """One row per incident opened in the range, oldest first, with its times to acknowledge and
    resolve (seconds, None while not done); call inside a transaction."""
    async for r in db.stream(conn, INCIDENTS, *_args(user_id, span)):
        yield {
            **dict(r),
            "seconds_to_acknowledge": _float(r["seconds_to_acknowledge"]),
            "seconds_to_resolve": _float(r["seconds_to_resolve"]),
        }


def _receipt_figures(r: Any) -> dict[str, Any]:
    return {
        "receipts_delivered": r["receipts_delivered"],
        "receipts_undelivered": r["receipts_undelivered"],
        "delivered_rate": rate(r["receipts_delivered"], r["receipts_delivered"] + r["receipts_undelivered"]),
        "time_to_delivered_p50_ms": _float(r["to_delivered_p50_ms"]),
        "answer_rate": rate(r["answered"], r["answered"] + r["not_answered"]),
    }


async def receipts(conn: db.Connection, user_id: uuid.UUID, span: DateRange) -> dict[str, Any]:
    """What the providers reported, per channel and overall, on the deliveries of calls and the
    pages: receipts delivered and undelivered, the delivered rate, the median time to delivered,
    the answer rate of calls."""
    channels, overall = [], None
    for r in await conn.fetch(RECEIPTS, *_args(user_id, span)):
        if r["channel"] is None:
            overall = _receipt_figures(r)
        else:
            channels.append({"channel": r["channel"], **_receipt_figures(r)})
    return {"channels": channels, "overall": overall}


async def performance(
    conn: db.Connection, user_id: uuid.UUID, span: DateRange, *, hours: int = 5
) -> dict[str, Any]:
    """Latency percentiles, retry and failure rates per channel and overall, with what the
    providers reported (``receipts``), over the deliveries of calls and the pages; the busiest
    hours (UTC) of calls."""
    channels, overall = [], None
    for r in await conn.fetch(PERFORMANCE, *_args(user_id, span)):
        row = {
            "channel": r["channel"],
            "deliveries": r["deliveries"],
            "delivered": r["delivered"],
            "failed": r["failed"],
            "pending": r["pending"],
            "cancelled": r["cancelled"],
            "latency_p50_ms": _float(r["p50_ms"]),
            "latency_p95_ms": _float(r["p95_ms"]),
            "latency_p99_ms": _float(r["p99_ms"]),
            "retry_rate": rate(r["retried"], r["deliveries"] - r["cancelled"]),
            "failure_rate": rate(r["failed"], r["delivered"] + r["failed"]),
            **_receipt_figures(r),
        }
        if r["channel"] is None:
            overall = {k: v for k, v in row.items() if k != "channel"}
        else:
            channels.append(row)
    busiest = [dict(r) for r in await conn.fetch(BUSIEST_HOURS, *_args(user_id, span), hours)]
    return {"channels": channels, "overall": overall, "busiest_hours": busiest}
