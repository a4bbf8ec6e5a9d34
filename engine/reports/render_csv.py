"""CSV reports (RFC 4180: CRLF line ends, quoting by the csv module), produced as a stream.

Rows come from a server-side cursor and leave in chunks of about ``CHUNK_BYTES``, so a year of
deliveries never sits in memory at once. One header row, then one row per record; summary and
performance end with a TOTAL / ALL row.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from engine import db
from engine.channels.registry import CHANNEL_TYPES
from engine.reports import ReportRequest, queries

CHUNK_BYTES = 64 * 1024

DETAILED = (
    "alert_id",
    "received_at",
    "webhook",
    "title",
    "severity",
    "source",
    "alert_status",
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
    # Added after the receipts: what the delivery was (page, bundle, resolved, digest), its
    # incident(s) and when it was created. A page of no call leaves the alert's columns empty.
    "kind",
    "incidents",
    "sent_at",
)
INCIDENTS = (
    "number",
    "incident_id",
    "webhook",
    "title",
    "severity",
    "status",
    "source",
    "alert_count",
    "opened_at",
    "acknowledged_at",
    "seconds_to_acknowledge",
    "acknowledged_by",
    "resolved_at",
    "seconds_to_resolve",
    "resolved_by",
)
SUMMARY = (
    "webhook",
    "alias",
    "calls",
    "successful",
    "failed",
    "pending",
    "success_rate",
    *(f"deliveries_{c}" for c in CHANNEL_TYPES),
    "incidents",
    "incidents_acknowledged",
    "mtta_seconds",
    "incidents_resolved",
    "mttr_seconds",
)
PERFORMANCE = (
    "channel",
    "deliveries",
    "delivered",
    "failed",
    "pending",
    "cancelled",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "retry_rate",
    "failure_rate",
    "receipts_delivered",
    "receipts_undelivered",
    "delivered_rate",
    "time_to_delivered_p50_ms",
    "answer_rate",
)


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) sends
# data away, =cmd|... runs a program), and alert titles and sources come from whoever knows a
# webhook URL. Such text gets a leading ' (OWASP's advice; spreadsheets hide it). Numbers and
# masked phone numbers ("+1415•••0123", "-5") cannot call anything and are left as they are.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER_LIKE = re.compile(r"[+-]?[\d\s().•-]*")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER_LIKE.fullmatch(value):
        return "'" + value
    return value


class _Writer:
    """A csv.writer over a buffer that hands back what accumulated once it is big enough."""

    def __init__(self, header: Iterable[str]) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")
        self.header = tuple(header)
        self.writer.writerow(self.header)
        self.rows = 0

    def row(self, record: dict[str, Any]) -> bytes | None:
        self.writer.writerow([_cell(record.get(k)) for k in self.header])
        self.rows += 1
        # The first row goes out at once (the query ran: the answer can start), then full chunks.
        return self.take() if self.rows == 1 or self.buffer.tell() >= CHUNK_BYTES else None

    def take(self) -> bytes:
        data = self.buffer.getvalue().encode()
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


HEADERS = {"summary": SUMMARY, "detailed": DETAILED, "incidents": INCIDENTS, "performance": PERFORMANCE}


async def stream(conn: db.Connection, user_id: uuid.UUID, request: ReportRequest) -> AsyncGenerator[bytes]:
    """Yield the CSV in chunks: header and first row together, then about CHUNK_BYTES at a time."""
    out = _Writer(HEADERS[request.type])
    async with conn.transaction():  # server-side cursors live inside a transaction
        async for record in _records(conn, user_id, request):
            chunk = out.row(record)
            if chunk:
                yield chunk
    yield out.take()


async def _records(
    conn: db.Connection, user_id: uuid.UUID, request: ReportRequest
) -> AsyncIterator[dict[str, Any]]:
    span = request.range
    if request.type == "detailed":
        async for record in queries.detailed_rows(conn, user_id, span):
            yield record
        async for record in queries.page_rows(conn, user_id, span):  # then the pages of no call
            yield record
    elif request.type == "incidents":
        async for record in queries.incident_rows(conn, user_id, span):
            yield record
    elif request.type == "summary":
        report = await queries.summary(conn, user_id, span)
        for entry in [*report["webhooks"], {**report["total"], "name": "TOTAL"}]:
            yield _summary_row(entry)
    else:
        report = await queries.performance(conn, user_id, span)
        for entry in [*report["channels"], {**report["overall"], "channel": "ALL"}]:
            yield entry


def _summary_row(entry: dict[str, Any]) -> dict[str, Any]:
    row = {**entry, "webhook": entry["name"], "alias": entry.get("alias")}
    for channel in CHANNEL_TYPES:
        row[f"deliveries_{channel}"] = entry["deliveries"].get(channel, 0)
    return row
