"""Reports on a user's alerts over a range of UTC days, as JSON, CSV (streamed) or PDF.

- ``ranges``      the date range syntax and its limits
- ``queries``     the SQL, one query per figure, every one scoped to the owner and free of test sends
- ``render_csv``  rows written as the database cursor yields them
- ``render_pdf``  title, range, a calls-per-day chart and the tables, with fpdf2

``parse_request`` validates what a client asked for; ``build`` gathers the report as a dict
(the JSON answer, and what the PDF is drawn from).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from engine import db, validate
from engine.errors import ValidationError
from engine.reports import queries
from engine.reports.ranges import DateRange, parse_range
from engine.validate import UNSET

TYPES = ("summary", "detailed", "incidents", "performance")
FORMATS = ("json", "csv", "pdf")
# Rows a JSON or PDF report holds at most; CSV streams every row.
MAX_ROWS = {"json": 10_000, "pdf": 500, "csv": None}
TITLES = {
    "summary": "Summary report",
    "detailed": "Detailed report",
    "incidents": "Incidents report",
    "performance": "Performance report",
}


@dataclass(frozen=True)
class ReportRequest:
    type: str
    format: str
    range: DateRange

    @property
    def filename(self) -> str:
        first, last = self.range.first.isoformat(), self.range.last.isoformat()
        return f"monoduty-{self.type}-{first}-to-{last}.{self.format}"

    @property
    def title(self) -> str:
        return f"Monoduty {TITLES[self.type].lower()}"


def parse_request(
    *,
    type: object = UNSET,
    format: object = UNSET,
    date_range: object = UNSET,
    today: date | None = None,
    max_days: int = 366,
) -> ReportRequest:
    """What a client asked for (UNSET: left out); every mistake is a 400 naming its field."""
    if type is UNSET:
        raise ValidationError("type is required", field="type")
    kind = validate.choice(type, "type", TYPES)
    fmt = validate.choice(format, "format", FORMATS, default="json")
    span = parse_range(
        None if date_range is UNSET else date_range,
        today=today or datetime.now(UTC).date(),
        max_days=max_days,
    )
    assert kind is not None and fmt is not None
    return ReportRequest(kind, fmt, span)


async def build(conn: db.Connection, user_id: uuid.UUID, request: ReportRequest) -> dict[str, Any]:
    """The report as data: the JSON answer's ``report``, and what the PDF draws."""
    span = request.range
    report: dict[str, Any] = {
        "type": request.type,
        "title": request.title,
        "date_range": {"from": span.first, "to": span.last},
        "generated_at": datetime.now(UTC),
        "calls_per_day": await queries.calls_per_day(conn, user_id, span),
    }
    limit = MAX_ROWS[request.format]
    if request.type == "summary":
        report.update(await queries.summary(conn, user_id, span))
    elif request.type == "performance":
        report.update(await queries.performance(conn, user_id, span))
    elif request.type == "detailed":
        async with conn.transaction():
            alerts, truncated = await _detailed(conn, user_id, span, limit)
            pages, pages_truncated = await _pages(conn, user_id, span, limit)
        report.update(
            alerts=alerts,
            pages=pages,
            truncated=truncated or pages_truncated,
            receipts=await queries.receipts(conn, user_id, span),
        )
    else:
        async with conn.transaction():
            rows: list[dict[str, Any]] = []
            truncated = False
            async for row in queries.incident_rows(conn, user_id, span):
                if limit is not None and len(rows) == limit:
                    truncated = True
                    break
                rows.append(row)
        report.update(incidents=rows, truncated=truncated)
    return report


async def _detailed(
    conn: db.Connection, user_id: uuid.UUID, span: DateRange, limit: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """Delivery rows folded into one entry per alert, up to ``limit`` alerts."""
    alerts: list[dict[str, Any]] = []
    async for row in queries.detailed_rows(conn, user_id, span):
        if not alerts or alerts[-1]["alert_id"] != row["alert_id"]:
            if limit is not None and len(alerts) == limit:
                return alerts, True
            alerts.append(
                {k: row[k] for k in _ALERT_KEYS} | {"status": row["alert_status"], "deliveries": []}
            )
        if row["channel"] is not None:
            alerts[-1]["deliveries"].append({k: row[k] for k in _DELIVERY_KEYS})
    return alerts, False


async def _pages(
    conn: db.Connection, user_id: uuid.UUID, span: DateRange, limit: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """The pages of the range (escalation's, and the other deliveries of no call), up to ``limit``."""
    pages: list[dict[str, Any]] = []
    async for row in queries.page_rows(conn, user_id, span):
        if limit is not None and len(pages) == limit:
            return pages, True
        pages.append({k: row[k] for k in _PAGE_KEYS})
    return pages, False


_ALERT_KEYS = ("alert_id", "received_at", "webhook", "title", "severity", "source")
_DELIVERY_KEYS = (
    "channel",
    "target",
    "status",
    "attempts",
    "latency_ms",
    "receipt_status",
    "provider_status",
    "receipt_error",
    "call_seconds",
    "time_to_delivered_ms",
)
_PAGE_KEYS = ("sent_at", "kind", "incidents", "webhook", "title", "severity", *_DELIVERY_KEYS)
