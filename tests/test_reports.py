"""POST /api/reports/generate: every type in every format matches data seeded with known timestamps."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.incidents import actions
from engine.reports import render_pdf
from engine.settings import Settings, SettingsError
from tests.support import report_data as data
from tests.support.factories import Account, assert_error, create, make_client
from tests.support.report_data import Seeded

TYPES = ("summary", "detailed", "incidents", "performance")
SPEC = Path(__file__).resolve().parent.parent / "api" / "openapi.yaml"


async def generate(client: TestClient, account: Account, **body: Any) -> Any:
    resp = await client.post("/api/reports/generate", json=body, headers=account.headers)
    return resp


async def report_json(client: TestClient, seeded: Seeded, kind: str) -> dict:
    resp = await generate(client, seeded.account, type=kind, dateRange=data.RANGE)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["success"] is True
    report = body["report"]
    assert (report["type"], report["date_range"]) == (kind, {"from": "2024-03-01", "to": "2024-03-05"})
    assert report["calls_per_day"] == data.expected_calls_per_day(seeded.alerts)
    return report


def close(actual: float | None, expected: float | None) -> bool:
    """SQL rounds numerics half away from zero; Python floats may land a hair the other way."""
    if actual is None or expected is None:
        return actual is expected
    return abs(actual - expected) <= 0.051


async def test_summary_json(client: TestClient, seeded: Seeded) -> None:
    report = await report_json(client, seeded, "summary")
    expected = data.expected_summary(seeded.alerts, seeded.names)
    got = {w["name"]: {k: w[k] for k in expected["TOTAL"]} for w in report["webhooks"]}
    got["TOTAL"] = {k: report["total"][k] for k in expected["TOTAL"]}
    assert got == expected
    assert expected["TOTAL"]["calls"] == 18  # 15 spread, 2 in-range edges, 1 without deliveries; no test


async def test_summary_has_mtta_and_mttr_per_webhook(client: TestClient, seeded: Seeded) -> None:
    report = await report_json(client, seeded, "summary")
    keys = ("incidents", "incidents_acknowledged", "incidents_resolved", "mtta_seconds", "mttr_seconds")
    got = {w["name"]: {k: w[k] for k in keys} for w in report["webhooks"]}
    got["TOTAL"] = {k: report["total"][k] for k in keys}
    assert got == data.expected_incident_times(seeded.incidents, seeded.names)
    # By hand: only acknowledged ones count toward MTTA, only resolved ones toward MTTR.
    # Production: acked after 250 s, 30.4 s, 120 s (#6, after the range ends); resolved after
    # 3720 s, 600 s, 1200 s (#4 never acknowledged). Staging: #3 90 s / 300 s, #5 still open.
    assert got["Production"] == {
        "incidents": 4,
        "incidents_acknowledged": 3,
        "incidents_resolved": 3,
        "mtta_seconds": 133.5,
        "mttr_seconds": 1840.0,
    }
    assert got["Staging"] == {
        "incidents": 2,
        "incidents_acknowledged": 1,
        "incidents_resolved": 1,
        "mtta_seconds": 90.0,
        "mttr_seconds": 300.0,
    }
    assert (got["TOTAL"]["mtta_seconds"], got["TOTAL"]["mttr_seconds"]) == (122.6, 1455.0)


async def test_mtta_and_mttr_of_what_the_engine_writes(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    """Alerts opening incidents, a person and a sender acknowledging and resolving them, each at an
    injected time: the report's means are the plain arithmetic of those times."""
    hook = await create(client, account, {"name": "Timed", "notificationTypes": ["EMAIL"]})
    t0 = datetime(2024, 3, 2, 8, 0, tzinfo=UTC)

    async def alert(conn: asyncpg.Connection, at: datetime, **body: str) -> None:
        parsed = parse_alert(json.dumps(body).encode(), "application/json")
        await lifecycle.record_alert(conn, uuid.uuid4(), uuid.UUID(hook["id"]), parsed, received_at=at)

    async with pool.acquire() as conn:
        await alert(conn, t0, title="A down", severity="critical")
        await alert(conn, t0 + timedelta(minutes=1), title="B down", severity="warning")
        await alert(conn, t0 + timedelta(minutes=2), title="C down", severity="info")
        a, b, _ = await conn.fetch(
            "SELECT id FROM incidents WHERE webhook_id = $1 ORDER BY number", uuid.UUID(hook["id"])
        )
        await actions.acknowledge(conn, account.user.id, a["id"], t0 + timedelta(seconds=45))
        await actions.resolve(conn, account.user.id, a["id"], t0 + timedelta(minutes=30))
        await actions.acknowledge(conn, account.user.id, b["id"], t0 + timedelta(minutes=1, seconds=75))
        await alert(conn, t0 + timedelta(minutes=11), title="B down", status="resolved")  # the sender's

    resp = await generate(client, account, type="summary", dateRange="2024-03-02 to 2024-03-02")
    timed = (await resp.json())["report"]["webhooks"][0]
    # MTTA (45 + 75) / 2; MTTR (1800 + 600) / 2; C, still triggered, counts in neither mean.
    assert (timed["incidents"], timed["incidents_acknowledged"], timed["incidents_resolved"]) == (3, 2, 2)
    assert (timed["mtta_seconds"], timed["mttr_seconds"]) == (60.0, 1200.0)

    resp = await generate(client, account, type="incidents", dateRange="2024-03-02 to 2024-03-02")
    rows = (await resp.json())["report"]["incidents"]
    assert [
        (
            r["title"],
            r["seconds_to_acknowledge"],
            r["acknowledged_by"],
            r["seconds_to_resolve"],
            r["resolved_by"],
        )
        for r in rows
    ] == [
        ("A down", 45.0, account.user.email, 1800.0, account.user.email),
        ("B down", 75.0, account.user.email, 600.0, "sender"),
        ("C down", None, None, None, None),
    ]
    assert [r["status"] for r in rows] == ["resolved", "resolved", "triggered"]


async def test_a_webhook_without_incidents_has_no_mean(
    client: TestClient, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM incidents WHERE user_id = $1", seeded.account.user.id)
    report = await report_json(client, seeded, "summary")
    for entry in [*report["webhooks"], report["total"]]:
        assert (entry["incidents"], entry["mtta_seconds"], entry["mttr_seconds"]) == (0, None, None)


async def test_detailed_json_masks_targets(client: TestClient, seeded: Seeded) -> None:
    report = await report_json(client, seeded, "detailed")
    expected = data.in_range(seeded.alerts)
    assert [a["alert_id"] for a in report["alerts"]] == [str(a.id) for a in expected]
    assert report["truncated"] is False
    for got, spec in zip(report["alerts"], expected, strict=True):
        assert (got["title"], got["status"], got["webhook"]) == (
            spec.title,
            spec.status,
            seeded.names[spec.webhook],
        )
        assert got["deliveries"] == [
            {
                "channel": d.channel,
                "target": data.masked(d.target),
                "status": d.status,
                "attempts": d.attempts,
                "latency_ms": float(d.latency_ms) if d.latency_ms is not None else None,
                "receipt_status": d.receipt,
                "provider_status": d.provider_status,
                "receipt_error": d.error,
                "call_seconds": d.call_seconds,
                "time_to_delivered_ms": float(d.reached_ms) if d.reached_ms is not None else None,
            }
            for d in sorted(spec.deliveries, key=lambda d: (d.channel, d.target))
        ]


async def test_detailed_and_performance_say_what_the_providers_reported(
    client: TestClient, seeded: Seeded
) -> None:
    expected = data.expected_receipts_per_channel(seeded.alerts)
    detailed = (await report_json(client, seeded, "detailed"))["receipts"]
    performance = await report_json(client, seeded, "performance")
    for report in (
        {c["channel"]: c for c in detailed["channels"]} | {None: detailed["overall"]},
        {c["channel"]: c for c in performance["channels"]} | {None: performance["overall"]},
    ):
        assert set(report) == set(expected)
        for channel, want in expected.items():
            for key, value in want.items():
                assert close(report[channel][key], value), (channel, key, report[channel][key], value)
    # Seeded: of the SMS Twilio reported on, 2 reached the phone and 1 did not (one more has no
    # receipt beyond accepted; failed, pending and cancelled ones none at all); 1 of 3 calls was
    # answered. Email and push confirm nothing: no rate, rather than 0 %.
    sms, call = expected["SMS"], expected["CALL"]
    assert (sms["receipts_delivered"], sms["receipts_undelivered"], sms["delivered_rate"]) == (2, 1, 66.67)
    assert (call["answer_rate"], expected[None]["answer_rate"], sms["answer_rate"]) == (33.33, 33.33, None)
    assert (expected["EMAIL"]["delivered_rate"], expected["EMAIL"]["time_to_delivered_p50_ms"]) == (
        None,
        None,
    )


def incident_row(spec: data.Incident, seeded: Seeded) -> dict[str, Any]:
    """The report's row for one incident spec (times as datetimes)."""

    def who(event: tuple[timedelta, str] | None) -> str | None:
        if event is None:
            return None
        return seeded.account.user.email if event[1] == "user" else event[1]

    def at(event: tuple[timedelta, str] | None) -> datetime | None:
        return spec.opened_at + event[0] if event else None

    def seconds(event: tuple[timedelta, str] | None) -> float | None:
        return round(event[0].total_seconds(), 1) if event else None

    return {
        "incident_id": str(spec.id),
        "number": spec.number,
        "webhook": seeded.names[spec.webhook],
        "title": spec.title,
        "severity": spec.severity,
        "status": spec.status,
        "source": None,
        "alert_count": spec.alert_count,
        "opened_at": spec.opened_at,
        "acknowledged_at": at(spec.acknowledged),
        "seconds_to_acknowledge": seconds(spec.acknowledged),
        "acknowledged_by": who(spec.acknowledged),
        "resolved_at": at(spec.resolved),
        "seconds_to_resolve": seconds(spec.resolved),
        "resolved_by": who(spec.resolved),
    }


TIMES = ("opened_at", "acknowledged_at", "resolved_at")


async def test_incidents_json_lists_incidents_opened_in_the_range(client: TestClient, seeded: Seeded) -> None:
    report = await report_json(client, seeded, "incidents")
    expected = data.incidents_in_range(seeded.incidents)
    assert [i["number"] for i in report["incidents"]] == [1, 2, 3, 4, 5, 6]  # not #7, #8: opened outside
    for got, spec in zip(report["incidents"], expected, strict=True):
        times = {k: datetime.fromisoformat(got[k]) if got[k] else None for k in TIMES}
        assert got | times == incident_row(spec, seeded)
    first = report["incidents"][0]
    assert (first["seconds_to_acknowledge"], first["acknowledged_by"]) == (250.0, seeded.account.user.email)
    assert (first["seconds_to_resolve"], first["status"]) == (3720.0, "resolved")
    assert report["truncated"] is False


async def test_performance_json(client: TestClient, seeded: Seeded) -> None:
    report = await report_json(client, seeded, "performance")
    expected = data.expected_performance(seeded.alerts)
    got = {c["channel"]: c for c in report["channels"]} | {None: report["overall"]}
    assert set(got) == set(expected)
    for channel, want in expected.items():
        for key, value in want.items():
            assert close(got[channel][key], value), (channel, key, got[channel][key], value)
    assert report["busiest_hours"] == data.expected_busiest_hours(seeded.alerts)
    # Two SMS pages were cancelled (their incident acknowledged first), one of them after a retry:
    # it is in the total and its own column, and the retry rate leaves it out.
    assert (got["SMS"]["cancelled"], got[None]["cancelled"], got["EMAIL"]["cancelled"]) == (2, 2, 0)
    for row in got.values():
        assert row["delivered"] + row["failed"] + row["pending"] + row["cancelled"] == row["deliveries"]


@pytest.mark.parametrize("kind", TYPES)
async def test_json_reports_answer_as_the_spec_says(client: TestClient, seeded: Seeded, kind: str) -> None:
    """Seeded data fills every list, so the item schemas are checked too (schemathesis's own
    requests mostly see empty reports)."""
    url = str(client.make_url("/api/reports/generate"))
    body = {"type": kind, "dateRange": data.RANGE}
    answer = await asyncio.to_thread(
        requests.post, url, json=body, headers=seeded.account.headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    operation = schemathesis.openapi.from_path(SPEC)["/api/reports/generate"]["POST"]
    operation.validate_response(answer)


async def csv_rows(client: TestClient, account: Account, kind: str) -> list[dict[str, str]]:
    resp = await generate(client, account, type=kind, dateRange=data.RANGE, format="csv")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == (
        f'attachment; filename="monoduty-{kind}-2024-03-01-to-2024-03-05.csv"'
    )
    assert resp.headers.get("Transfer-Encoding") == "chunked"  # streamed, not built then sent
    assert resp.headers["X-Request-Id"]
    text = await resp.text()
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_summary_csv(client: TestClient, seeded: Seeded) -> None:
    rows = {r["webhook"]: r for r in await csv_rows(client, seeded.account, "summary")}
    for name, want in data.expected_summary(seeded.alerts, seeded.names).items():
        row = rows[name]
        assert [int(row[k]) for k in ("calls", "successful", "failed", "pending")] == [
            want[k] for k in ("calls", "successful", "failed", "pending")
        ]
        assert float(row["success_rate"]) == want["success_rate"]
        for channel in ("EMAIL", "SMS", "PUSH_NOTIF", "CALL"):
            assert int(row[f"deliveries_{channel}"]) == want["deliveries"].get(channel, 0)
    assert list(rows) == ["Production", "Staging", "TOTAL"]


async def test_detailed_csv(client: TestClient, seeded: Seeded) -> None:
    rows = await csv_rows(client, seeded.account, "detailed")
    expected = [
        (
            str(a.id),
            a.title,
            d.channel if d else "",
            data.masked(d.target) if d else "",
            d.status if d else "",
            str(d.attempts) if d else "",
        )
        for a in data.in_range(seeded.alerts)
        for d in (sorted(a.deliveries, key=lambda d: (d.channel, d.target)) or [None])
    ]
    assert [
        (r["alert_id"], r["title"], r["channel"], r["target"], r["status"], r["attempts"]) for r in rows
    ] == expected


async def test_incidents_csv_parses_back(client: TestClient, seeded: Seeded, pool: asyncpg.Pool) -> None:
    awkward = 'Disk "full", again\nsecond line'
    async with pool.acquire() as conn:
        await conn.execute("UPDATE incidents SET title = $2 WHERE id = $1", seeded.incidents[1].id, awkward)
    rows = await csv_rows(client, seeded.account, "incidents")
    assert {r["incident_id"]: r["title"] for r in rows}[str(seeded.incidents[1].id)] == awkward
    expected = data.incidents_in_range(seeded.incidents)
    assert len(rows) == len(expected) == 6
    for row, spec in zip(rows, expected, strict=True):
        want = incident_row(spec, seeded)
        assert int(row["number"]) == spec.number and int(row["alert_count"]) == spec.alert_count
        assert (row["webhook"], row["severity"], row["status"]) == (
            want["webhook"],
            spec.severity,
            spec.status,
        )
        assert datetime.fromisoformat(row["opened_at"]) == spec.opened_at
        for key in ("seconds_to_acknowledge", "seconds_to_resolve"):
            assert (float(row[key]) if row[key] else None) == want[key]
        for key in ("acknowledged_by", "resolved_by"):
            assert (row[key] or None) == want[key]
        for key in ("acknowledged_at", "resolved_at"):
            assert (datetime.fromisoformat(row[key]) if row[key] else None) == want[key]
    assert rows[1]["acknowledged_by"] == "sender" and rows[2]["acknowledged_by"] == "system"
    assert rows[4]["acknowledged_at"] == rows[4]["resolved_at"] == rows[4]["seconds_to_resolve"] == ""


async def test_summary_csv_has_mtta_and_mttr(client: TestClient, seeded: Seeded) -> None:
    rows = {r["webhook"]: r for r in await csv_rows(client, seeded.account, "summary")}
    for name, want in data.expected_incident_times(seeded.incidents, seeded.names).items():
        assert int(rows[name]["incidents"]) == want["incidents"]
        assert int(rows[name]["incidents_acknowledged"]) == want["incidents_acknowledged"]
        assert float(rows[name]["mtta_seconds"]) == want["mtta_seconds"]
        assert float(rows[name]["mttr_seconds"]) == want["mttr_seconds"]
    assert (rows["TOTAL"]["mtta_seconds"], rows["TOTAL"]["mttr_seconds"]) == ("122.6", "1455.0")


async def test_performance_csv(client: TestClient, seeded: Seeded) -> None:
    rows = {r["channel"]: r for r in await csv_rows(client, seeded.account, "performance")}
    for channel, want in data.expected_performance(seeded.alerts).items():
        row = rows[channel or "ALL"]
        assert int(row["deliveries"]) == want["deliveries"] and int(row["failed"]) == want["failed"]
        assert int(row["cancelled"]) == want["cancelled"]
        # every delivery is in exactly one column: the total adds up
        outcomes = ("delivered", "failed", "pending", "cancelled")
        assert sum(int(row[k]) for k in outcomes) == int(row["deliveries"])
        assert close(float(row["latency_p95_ms"]), want["latency_p95_ms"])
        assert close(float(row["retry_rate"]), want["retry_rate"])
        for key in ("delivered_rate", "answer_rate", "time_to_delivered_p50_ms"):
            assert close(float(row[key]) if row[key] else None, want[key]), (channel, key)


def pdf_text(document: bytes, tmp_path: Any) -> str:
    reader = PdfReader(io.BytesIO(document))
    assert len(reader.pages) >= 1
    text = "\n".join(page.extract_text() for page in reader.pages)
    if shutil.which("pdftotext"):  # poppler's reader must open it too
        path = tmp_path / "report.pdf"
        path.write_bytes(document)
        poppler = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
        assert "Monoduty" in poppler.stdout
    return text


@pytest.mark.parametrize("kind", TYPES)
async def test_pdf_opens_and_holds_the_report(
    client: TestClient, seeded: Seeded, kind: str, tmp_path: Any
) -> None:
    resp = await generate(client, seeded.account, type=kind, dateRange=data.RANGE, format="pdf")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/pdf"
    assert (
        resp.headers["Content-Disposition"]
        == f'attachment; filename="monoduty-{kind}-2024-03-01-to-2024-03-05.pdf"'
    )
    document = await resp.read()
    assert document.startswith(b"%PDF-")
    text = pdf_text(document, tmp_path)
    assert f"Monoduty {kind} report" in text
    assert "2024-03-01 to 2024-03-05" in text
    assert "Calls per day" in text
    assert "18 calls" in text
    assert "Other Team" not in text and "secret outage" not in text
    if kind == "summary":
        assert "Production" in text and "Staging" in text
    if kind == "summary":
        assert "MTTA" in text and "MTTR" in text
        assert "2m 14s" in text and "30m 40s" in text  # Production: 133.5 s, 1,840 s
        assert "24m 15s" in text  # TOTAL MTTR: 1,455 s
    if kind == "incidents":
        assert "DB down" in text and "Queue stuck" in text
        assert "Opened before" not in text and "Opened after" not in text
        assert "4m 10s" in text and "1h 02m" in text  # #1: acknowledged and resolved after
        assert seeded.account.user.email in text and "sender" in text and "system" in text
    if kind == "performance":
        assert "Cancelled" in text
    if kind in ("performance", "detailed"):
        assert "What the providers reported" in text and "Answer rate" in text
    if kind == "detailed":
        assert "+1415\u2022\u2022\u20220123" in text and "+14155550123" not in text


async def test_the_summary_pdf_has_a_column_for_every_channel(
    client: TestClient, seeded: Seeded, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if a channel were added to engine/channels/registry.py: the table must grow with it.
    monkeypatch.setattr(render_pdf, "CHANNEL_TYPES", (*render_pdf.CHANNEL_TYPES, "SLACK"))
    resp = await generate(client, seeded.account, type="summary", dateRange=data.RANGE, format="pdf")
    assert resp.status == 200, await resp.text()
    assert "SLACK" in pdf_text(await resp.read(), tmp_path)


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("kind", TYPES)
async def test_another_users_data_never_appears(
    client: TestClient, seeded: Seeded, kind: str, fmt: str
) -> None:
    resp = await generate(client, seeded.account, type=kind, dateRange=data.RANGE, format=fmt)
    text = await resp.text()
    assert resp.status == 200
    for secret in (data.OTHER_TITLE, "Other Team Hook", "+1415\u2022\u2022\u20229999", data.OTHER_TARGET):
        assert secret not in text
    # and theirs holds only their own five calls
    resp = await generate(client, seeded.other, type="summary", dateRange=data.RANGE)
    total = (await resp.json())["report"]["total"]
    assert (total["calls"], total["failed"], total["deliveries"]) == (5, 5, {"SMS": 5})


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "type", "VALIDATION_ERROR"),
        ({"type": "weekly"}, "type", "VALIDATION_ERROR"),
        ({"type": "summary", "format": "xml"}, "format", "VALIDATION_ERROR"),
        ({"type": "summary", "dateRange": "2024-03-01..2024-03-05"}, "dateRange", "DATE_RANGE_MALFORMED"),
        ({"type": "summary", "dateRange": "2024-02-30 to 2024-03-05"}, "dateRange", "DATE_RANGE_MALFORMED"),
        ({"type": "summary", "dateRange": 20240301}, "dateRange", "DATE_RANGE_MALFORMED"),
        ({"type": "summary", "dateRange": "2024-03-05 to 2024-03-01"}, "dateRange", "DATE_RANGE_REVERSED"),
        ({"type": "summary", "dateRange": "2023-01-01 to 2024-03-01"}, "dateRange", "DATE_RANGE_TOO_LONG"),
        ({"type": "summary", "range": "2024-03-01 to 2024-03-05"}, "range", "VALIDATION_ERROR"),
    ],
)
async def test_bad_requests_name_the_field(
    client: TestClient, account: Account, body: dict, field: str, code: str
) -> None:
    resp = await client.post("/api/reports/generate", json=body, headers=account.headers)
    assert resp.status == 400
    error = await resp.json()
    assert_error(error, code)
    assert field in error["error"]


async def test_range_limit_is_configurable_and_default_is_last_seven_days(
    settings: Settings, redis: Any, account: Account, pool: asyncpg.Pool
) -> None:
    client = await make_client(settings.with_(report_max_days=30))
    try:
        ok30 = await generate(client, account, type="summary", dateRange="2024-03-01 to 2024-03-30")
        too_long = await generate(client, account, type="summary", dateRange="2024-03-01 to 2024-03-31")
        assert ok30.status == 200
        assert too_long.status == 400 and "maximum is 30" in (await too_long.json())["error"]

        hook = await create(client, account, {"name": "Recent", "notificationTypes": ["EMAIL"]})
        now = datetime.now(UTC)
        recent = [
            data.Incident("w", d + 1, f"recent {d}", "info", now - timedelta(days=d), 1) for d in (0, 6, 7)
        ]
        await data.insert_incidents(pool, account.user.id, {"w": hook["id"]}, recent)
        report = (await (await generate(client, account, type="incidents")).json())["report"]
        today = now.date()
        assert report["date_range"] == {
            "from": (today - timedelta(days=6)).isoformat(),
            "to": today.isoformat(),
        }
        assert sorted(i["title"] for i in report["incidents"]) == ["recent 0", "recent 6"]
    finally:
        await client.close()


async def test_reports_need_auth(client: TestClient) -> None:
    resp = await client.post("/api/reports/generate", json={"type": "summary"})
    assert resp.status == 401
    assert_error(await resp.json(), "UNAUTHORIZED")


async def test_a_large_csv_leaves_in_many_chunks(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    """Rows are written as the cursor yields them, not gathered into one body first."""
    hook = await create(client, account, {"name": "Busy", "notificationTypes": ["EMAIL"]})
    async with pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO incidents (id, user_id, webhook_id, number, title, severity, alert_count,
                first_alert_at, last_alert_at, team_id)
            SELECT gen_random_uuid(), $2, $1, n, 'bulk incident ' || n, 'info', 1,
                '2024-03-02'::timestamptz + make_interval(secs => n),
                '2024-03-02'::timestamptz + make_interval(secs => n),
                (SELECT team_id FROM webhooks WHERE id = $1)
            FROM generate_series(1, 3000) n
            """,
            uuid.UUID(hook["id"]),
            account.user.id,
        )
    resp = await generate(client, account, type="incidents", dateRange=data.RANGE, format="csv")
    assert resp.status == 200
    http_chunks, body = 0, b""
    async for piece, end_of_chunk in resp.content.iter_chunks():
        body += piece
        http_chunks += end_of_chunk
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert len(rows) == 3000 and rows[-1]["title"] == "bulk incident 3000"
    assert http_chunks >= 3  # header + first row at once, then ~64 KiB pieces


def test_the_range_limit_setting_is_parsed_strictly() -> None:
    assert Settings.from_env({}).report_max_days == 366
    assert Settings.from_env({"MONODUTY_REPORT_MAX_DAYS": "31"}).report_max_days == 31
    with pytest.raises(SettingsError, match="MONODUTY_REPORT_MAX_DAYS"):
        Settings.from_env({"MONODUTY_REPORT_MAX_DAYS": "0"})
