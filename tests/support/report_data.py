"""Report test data: alerts and incidents with known timestamps and outcomes, and the figures they
should give.

Every expected figure here is computed from the specs in plain Python, never by engine code.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg

from tests.support.factories import Account

FIRST, LAST = date(2024, 3, 1), date(2024, 3, 5)
RANGE = "2024-03-01 to 2024-03-05"
DAY0 = datetime(2024, 3, 1, tzinfo=UTC)
OTHER_TITLE = "Other user's secret outage"
OTHER_TARGET = "+14155559999"


@dataclass
class Delivery:
    channel: str
    target: str
    status: str
    attempts: int
    latency_ms: int | None  # None while pending
    # What the provider said since (engine.alerts.receipts); "accepted" by default once handed over.
    receipt: str | None = None
    reached_ms: int | None = None  # from creation to reaching the person, when delivered
    error: str | None = None  # the provider's error code, when undelivered
    call_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.receipt is None and self.status == "delivered":
            self.receipt = "accepted"

    @property
    def provider_status(self) -> str | None:
        """Twilio's word for the receipt; None for the channels Twilio does not carry."""
        return TWILIO_WORDS.get((self.channel, self.receipt or ""))


TWILIO_WORDS = {
    ("SMS", "delivered"): "delivered",
    ("SMS", "undelivered"): "undelivered",
    ("CALL", "delivered"): "completed",
    ("CALL", "undelivered"): "no-answer",
}


@dataclass
class Alert:
    webhook: str  # a key of the seeded webhooks
    received_at: datetime
    title: str
    severity: str
    source: str | None
    status: str
    deliveries: list[Delivery] = field(default_factory=list)
    is_test: bool = False
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def in_range(self) -> bool:
        return not self.is_test and FIRST <= self.received_at.date() <= LAST


def specs() -> list[Alert]:
    """Fifteen calls over five days on two webhooks, the range's edges, and a test send."""
    alerts = []
    i = 0
    for day in range(5):
        for k in range(day + 1):
            i += 1
            when = DAY0 + timedelta(days=day, hours=[9, 14, 9, 22, 3][k], minutes=i, seconds=i)
            if i % 3:
                sms_status = "failed" if i % 5 == 0 else "pending" if i % 7 == 0 else "delivered"
                attempts = 5 if sms_status == "failed" else 1 + (i % 4 == 0)
                if i in (8, 11):  # the page's incident was acknowledged first: never sent
                    sms_status, attempts = "cancelled", 2 if i == 8 else 0
                deliveries = [
                    Delivery("EMAIL", "oncall@example.com", "delivered", 1, 100 * i),
                    Delivery(
                        "SMS",
                        "+14155550123",
                        sms_status,
                        attempts,
                        None if sms_status == "pending" else 250 * i + 7,
                        **sms_receipt(i) if sms_status == "delivered" else {},
                    ),
                ]
                if i % 4 == 1:  # every other of them also calls, answered or not
                    answered = i % 8 == 1
                    deliveries.append(
                        Delivery(
                            "CALL",
                            "+14155550124",
                            "delivered",
                            1,
                            300 * i,
                            receipt="delivered" if answered else "undelivered",
                            reached_ms=9000 + 1000 * i if answered else None,
                            call_seconds=20 + i if answered else 0,
                        )
                    )
                webhook = "prod"
            else:
                deliveries = [Delivery("PUSH_NOTIF", "staging-topic", "delivered", 1 + (i % 2), 50 * i)]
                webhook = "staging"
            statuses = {d.status for d in deliveries}
            status = (
                "pending" if "pending" in statuses else "failed" if "failed" in statuses else "successful"
            )
            alerts.append(
                Alert(
                    webhook,
                    when,
                    f"Alert {i}",
                    ["critical", "warning", "info"][i % 3],
                    f"source-{i % 2}",
                    status,
                    deliveries,
                )
            )
    edge = [Delivery("EMAIL", "oncall@example.com", "delivered", 1, 40)]
    alerts += [
        Alert(
            "prod", datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC), "edge-first", "error", None, "successful", edge
        ),
        Alert(
            "prod",
            datetime(2024, 3, 5, 23, 59, 59, tzinfo=UTC),
            "edge-last",
            "error",
            None,
            "successful",
            edge,
        ),
        Alert(
            "prod",
            datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
            "edge-before",
            "error",
            None,
            "successful",
            edge,
        ),
        Alert(
            "prod", datetime(2024, 3, 6, 0, 0, 0, tzinfo=UTC), "edge-after", "error", None, "successful", edge
        ),
        Alert(
            "prod",
            datetime(2024, 3, 2, 12, 0, tzinfo=UTC),
            "test-send",
            "info",
            "monoduty",
            "successful",
            edge,
            is_test=True,
        ),
        Alert(
            "staging",
            datetime(2024, 3, 3, 9, 30, tzinfo=UTC),
            "no-deliveries",
            "info",
            None,
            "successful",
            [],
        ),
    ]
    return alerts


def sms_receipt(i: int) -> dict[str, object]:
    """What Twilio said of the i-th call's SMS: delivered (soon or late), undelivered, or nothing yet."""
    return [
        {},
        {"receipt": "delivered", "reached_ms": 3000 + 100 * i},
        {"receipt": "undelivered", "error": "30003"},
        {"receipt": "delivered", "reached_ms": 5000},
    ][i % 4]


def other_specs() -> list[Alert]:
    delivery = [Delivery("SMS", OTHER_TARGET, "failed", 3, 900)]
    return [
        Alert(
            "other",
            DAY0 + timedelta(days=d, hours=9),
            OTHER_TITLE,
            "critical",
            "elsewhere",
            "failed",
            delivery,
        )
        for d in range(5)
    ]


async def insert(
    pool: asyncpg.Pool, user_id: uuid.UUID, webhook_ids: dict[str, str], alerts: list[Alert]
) -> None:
    alert_rows, delivery_rows = [], []
    for a in alerts:
        final = [d.latency_ms for d in a.deliveries if d.latency_ms is not None]
        finished = (
            None
            if a.status == "pending"
            else a.received_at + timedelta(seconds=1, milliseconds=max(final or [0]))
        )
        alert_rows.append(
            (
                a.id,
                uuid.UUID(webhook_ids[a.webhook]),
                user_id,
                a.is_test,
                a.status,
                a.title,
                a.severity,
                a.source,
                a.received_at,
                finished,
            )
        )
        for d in a.deliveries:
            created = a.received_at + timedelta(seconds=1)
            done = created + timedelta(milliseconds=d.latency_ms) if d.latency_ms is not None else None
            reached = created + timedelta(milliseconds=d.reached_ms) if d.reached_ms is not None else None
            delivery_rows.append(
                (
                    uuid.uuid4(),
                    a.id,
                    d.channel,
                    d.target,
                    d.status,
                    d.attempts,
                    created,
                    done if d.status == "delivered" else None,
                    done,
                    d.receipt,
                    d.provider_status,
                    d.error,
                    reached or done if d.receipt else None,
                    reached,
                    d.call_seconds,
                )
            )
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """INSERT INTO alerts (id, webhook_id, user_id, is_test, status, title, severity, source, format,
                   received_at, finished_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'json', $9, $10)""",
            alert_rows,
        )
        await conn.executemany(
            """INSERT INTO deliveries (id, alert_id, channel, target, status, attempts, created_at,
                   delivered_at, finished_at, receipt_status, provider_status, receipt_error, receipt_at,
                   reached_at, call_seconds)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
            delivery_rows,
        )


@dataclass
class Incident:
    webhook: str
    number: int
    title: str
    severity: str
    opened_at: datetime
    alert_count: int
    acknowledged: tuple[timedelta, str] | None = None  # (after opening, "user"/"sender"/"system")
    resolved: tuple[timedelta, str] | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def in_range(self) -> bool:
        return FIRST <= self.opened_at.date() <= LAST

    @property
    def status(self) -> str:
        return "resolved" if self.resolved else "acknowledged" if self.acknowledged else "triggered"


def incident_specs() -> list[Incident]:
    """Six incidents opened in the range (acknowledged or not, resolved or not, by a user, the sender
    or the system), one acknowledged after the range ends, and two opened outside it."""
    t = DAY0 + timedelta(hours=9, minutes=3, seconds=20)
    return [
        Incident(
            "prod",
            1,
            "DB down",
            "critical",
            t,
            3,
            acknowledged=(timedelta(minutes=4, seconds=10), "user"),
            resolved=(timedelta(hours=1, minutes=2), "user"),
        ),
        Incident(
            "prod",
            2,
            "Disk full",
            "warning",
            t + timedelta(days=1, hours=5),
            1,
            acknowledged=(timedelta(seconds=30.4), "sender"),
            resolved=(timedelta(minutes=10), "sender"),
        ),
        Incident(
            "staging",
            3,
            "Cron missed",
            "warning",
            t + timedelta(days=1, hours=7),
            2,
            acknowledged=(timedelta(seconds=90), "system"),
            resolved=(timedelta(minutes=5), "system"),
        ),
        Incident(
            "prod",
            4,
            "Latency high",
            "error",
            t + timedelta(days=2),
            7,
            resolved=(timedelta(minutes=20), "sender"),  # resolved, never acknowledged
        ),
        Incident("staging", 5, "Cert expires", "info", t + timedelta(days=3), 1),  # still triggered
        Incident(
            "prod",
            6,
            "Queue stuck",
            "critical",
            datetime(2024, 3, 5, 23, 59, 59, tzinfo=UTC),
            4,
            acknowledged=(timedelta(minutes=2), "user"),  # after the range ends; opened in it
        ),
        Incident(
            "prod",
            7,
            "Opened before",
            "error",
            datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
            1,
            acknowledged=(timedelta(seconds=1), "user"),
            resolved=(timedelta(seconds=2), "user"),
        ),
        Incident("prod", 8, "Opened after", "error", datetime(2024, 3, 6, tzinfo=UTC), 1),
    ]


def other_incidents() -> list[Incident]:
    return [
        Incident(
            "other",
            1,
            OTHER_TITLE,
            "critical",
            DAY0 + timedelta(hours=10),
            5,
            acknowledged=(timedelta(seconds=5), "user"),
            resolved=(timedelta(seconds=9), "user"),
        )
    ]


async def insert_incidents(
    pool: asyncpg.Pool, user_id: uuid.UUID, webhook_ids: dict[str, str], incidents: list[Incident]
) -> None:
    """Rows as engine.incidents writes them; a person's acknowledge or resolve names ``user_id``."""
    rows = []
    for i in incidents:
        done = {
            what: (i.opened_at + event[0], event[1], user_id if event[1] == "user" else None)
            if event
            else (None, None, None)
            for what, event in (("ack", i.acknowledged), ("res", i.resolved))
        }
        rows.append(
            (
                i.id,
                user_id,
                uuid.UUID(webhook_ids[i.webhook]),
                i.number,
                i.title,
                i.severity,
                i.status,
                f"key-{i.number}",
                i.alert_count,
                i.opened_at,
                *done["ack"],
                *done["res"],
            )
        )
    async with pool.acquire() as conn:
        await conn.executemany(
            """INSERT INTO incidents (id, user_id, webhook_id, number, title, severity, status, dedup_key,
                   alert_count, first_alert_at, last_alert_at, acknowledged_at, acknowledged_by,
                   acknowledged_by_user, resolved_at, resolved_by, resolved_by_user, team_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15, $16,
                   (SELECT team_id FROM webhooks WHERE id = $3))""",
            rows,
        )


# ---- expected figures, from the specs alone ----


def in_range(alerts: list[Alert]) -> list[Alert]:
    return sorted((a for a in alerts if a.in_range), key=lambda a: (a.received_at, a.id))


def pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def percentile(values: list[float], q: float) -> float | None:
    """percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    values = sorted(values)
    pos = q * (len(values) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return values[low] + (values[high] - values[low]) * (pos - low)


def expected_summary(alerts: list[Alert], names: dict[str, str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key in [*names, "TOTAL"]:
        chosen = [a for a in in_range(alerts) if key == "TOTAL" or a.webhook == key]
        counts = Counter(a.status for a in chosen)
        out[names.get(key, "TOTAL")] = {
            "calls": len(chosen),
            "successful": counts["successful"],
            "failed": counts["failed"],
            "pending": counts["pending"],
            "success_rate": pct(counts["successful"], counts["successful"] + counts["failed"]),
            "deliveries": dict(sorted(Counter(d.channel for a in chosen for d in a.deliveries).items())),
        }
    return out


def expected_performance(alerts: list[Alert]) -> dict[str | None, dict]:
    everything = [d for a in in_range(alerts) for d in a.deliveries]
    out: dict[str | None, dict] = {}
    for channel in [*sorted({d.channel for d in everything}), None]:
        chosen = [d for d in everything if channel is None or d.channel == channel]
        delivered = [
            float(d.latency_ms) for d in chosen if d.status == "delivered" and d.latency_ms is not None
        ]
        failed = sum(d.status == "failed" for d in chosen)
        cancelled = [d for d in chosen if d.status == "cancelled"]
        sent = [d for d in chosen if d.status != "cancelled"]
        out[channel] = {
            "deliveries": len(chosen),
            "delivered": len(delivered),
            "failed": failed,
            "pending": sum(d.status == "pending" for d in chosen),
            "cancelled": len(cancelled),
            "latency_p50_ms": percentile(delivered, 0.5),
            "latency_p95_ms": percentile(delivered, 0.95),
            "latency_p99_ms": percentile(delivered, 0.99),
            "retry_rate": pct(sum(d.attempts > 1 for d in sent), len(sent)),
            "failure_rate": pct(failed, len(delivered) + failed),
            **expected_receipts(chosen),
        }
    return out


def expected_receipts(chosen: list[Delivery]) -> dict[str, object]:
    """What the providers reported of ``chosen``, as the reports count it."""
    reached = [d for d in chosen if d.receipt == "delivered"]
    missed = [d for d in chosen if d.receipt == "undelivered"]
    calls = [d for d in [*reached, *missed] if d.channel == "CALL"]
    return {
        "receipts_delivered": len(reached),
        "receipts_undelivered": len(missed),
        "delivered_rate": pct(len(reached), len(reached) + len(missed)),
        "time_to_delivered_p50_ms": percentile([float(d.reached_ms or 0) for d in reached], 0.5),
        "answer_rate": pct(sum(d.receipt == "delivered" for d in calls), len(calls)),
    }


def expected_receipts_per_channel(alerts: list[Alert]) -> dict[str | None, dict[str, object]]:
    everything = [d for a in in_range(alerts) for d in a.deliveries]
    channels = [*sorted({d.channel for d in everything}), None]
    return {c: expected_receipts([d for d in everything if c is None or d.channel == c]) for c in channels}


def expected_busiest_hours(alerts: list[Alert]) -> list[dict]:
    counts = Counter(a.received_at.hour for a in in_range(alerts))
    return [{"hour": h, "calls": n} for h, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]


def expected_calls_per_day(alerts: list[Alert]) -> list[dict]:
    counts = Counter(a.received_at.date() for a in in_range(alerts))
    return [
        {"date": (FIRST + timedelta(days=n)).isoformat(), "calls": counts[FIRST + timedelta(days=n)]}
        for n in range(5)
    ]


def first_delivery_ms(alert: Alert) -> float | None:
    delivered = [
        d.latency_ms for d in alert.deliveries if d.status == "delivered" and d.latency_ms is not None
    ]
    return float(1000 + min(delivered)) if delivered else None


def masked(target: str) -> str:
    return {
        "oncall@example.com": "o\u2022\u2022\u2022@example.com",
        "+14155550123": "+1415\u2022\u2022\u20220123",
        "+14155550124": "+1415\u2022\u2022\u20220124",
        "staging-topic": "st\u2022\u2022\u2022ic",
    }[target]


@dataclass(frozen=True)
class Seeded:
    account: Account
    other: Account
    alerts: list[Alert]
    names: dict[str, str]  # spec key -> webhook name
    incidents: list[Incident]


def incidents_in_range(incidents: list[Incident]) -> list[Incident]:
    return sorted((i for i in incidents if i.in_range), key=lambda i: (i.opened_at, i.number))


def mean_seconds(values: list[timedelta]) -> float | None:
    return round(sum(v.total_seconds() for v in values) / len(values), 1) if values else None


def expected_incident_times(incidents: list[Incident], names: dict[str, str]) -> dict[str, dict]:
    """MTTA / MTTR as PagerDuty counts them: over the acknowledged / resolved ones only."""
    out: dict[str, dict] = {}
    for key in [*names, "TOTAL"]:
        chosen = [i for i in incidents_in_range(incidents) if key == "TOTAL" or i.webhook == key]
        acked = [i.acknowledged[0] for i in chosen if i.acknowledged]
        resolved = [i.resolved[0] for i in chosen if i.resolved]
        out[names.get(key, "TOTAL")] = {
            "incidents": len(chosen),
            "incidents_acknowledged": len(acked),
            "incidents_resolved": len(resolved),
            "mtta_seconds": mean_seconds(acked),
            "mttr_seconds": mean_seconds(resolved),
        }
    return out
