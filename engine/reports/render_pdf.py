"""PDF reports with fpdf2: a title, the range, a calls-per-day bar chart, then the type's tables.

Built from the same dict as the JSON answer. Rendering is CPU work: call ``render`` in a thread.
The built-in Helvetica keeps the file small and needs no font on disk; it covers Windows-1252, so
other characters (emoji, CJK) print as '?'.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from engine.channels.registry import CHANNEL_TYPES

ACCENT = (37, 99, 235)
GREY = (110, 110, 110)
HEADINGS = FontFace(emphasis="BOLD", fill_color=(230, 236, 250))


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).encode("cp1252", "replace").decode("cp1252")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _minute(value: datetime | None) -> str:
    """A time to the minute: the durations next to it carry the seconds, and it fits one line."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float | None) -> str:
    """``45s``, ``4m 10s``, ``2h 05m``, ``3d 04h``: as precise as a reader of a report needs."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class _Report(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="landscape", format="A4")
        self.core_fonts_encoding = "windows-1252"
        self.report_title = title
        self.set_auto_page_break(auto=True, margin=15)
        self.set_title(title)
        self.set_creator("Monoduty")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("helvetica", size=8)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self.report_title} - page {self.page_no()}/{{nb}}", align="C")

    def heading(self, text: str) -> None:
        self.ln(4)
        self.set_font("helvetica", "B", 12)
        self.set_text_color(*ACCENT)
        self.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)

    def grid(self, header: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int]) -> None:
        # A table wider than the page is squeezed to fit: its text shrinks with it, so that a
        # heading such as WEBHOOK or TELEGRAM is not broken inside the word.
        squeeze = min(1.0, self.epw / sum(widths))
        self.set_font("helvetica", size=max(5.5, round(8 * squeeze, 1)))
        self.set_draw_color(200, 200, 200)
        # numbers line up on the right, text on the left
        aligns = [
            "RIGHT"
            if any(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
            else "LEFT"
            for i in range(len(header))
        ]
        with self.table(
            width=min(sum(widths), int(self.epw)),
            col_widths=widths,
            headings_style=HEADINGS,
            line_height=5,
            text_align=aligns,
            align="LEFT",
            cell_fill_color=(244, 246, 251),
            cell_fill_mode="ROWS",
            borders_layout="HORIZONTAL_LINES",
        ) as table:
            table.row([_text(h) for h in header])
            for row in rows:
                table.row([_text(v) for v in row])
        self.set_draw_color(0, 0, 0)
        if not rows:
            self.note("Nothing in this range.")

    def note(self, text: str) -> None:
        self.set_font("helvetica", "I", 8)
        self.set_text_color(*GREY)
        self.multi_cell(0, 5, _text(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)


def render(report: dict[str, Any]) -> bytes:
    """The report as a PDF document."""
    pdf = _Report(report["title"])
    pdf.add_page()
    pdf.set_font("helvetica", "B", 20)
    pdf.cell(0, 11, report["title"], new_x="LMARGIN", new_y="NEXT")
    span = report["date_range"]
    calls = sum(d["calls"] for d in report["calls_per_day"])
    pdf.set_font("helvetica", size=10)
    pdf.set_text_color(*GREY)
    pdf.cell(
        0,
        6,
        f"{span['from']} to {span['to']} (UTC, both days included) - {calls:,} calls - "
        f"generated {report['generated_at']:%Y-%m-%d %H:%M} UTC",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_text_color(0, 0, 0)
    pdf.heading("Calls per day")
    _bar_chart(pdf, report["calls_per_day"])
    {"summary": _summary, "detailed": _detailed, "incidents": _incidents, "performance": _performance}[
        report["type"]
    ](pdf, report)
    return bytes(pdf.output())


def _bar_chart(pdf: FPDF, days: list[dict[str, Any]], height: float = 55) -> None:
    """Bars drawn with rect/line, a few y gridlines, day labels thinned to fit."""
    left, top = pdf.l_margin + 12, pdf.get_y() + 2
    width = pdf.w - pdf.r_margin - left
    peak = max([d["calls"] for d in days] + [1])
    step = max(1, -(-peak // 4))  # four gridlines, whole numbers
    top_value = step * 4
    pdf.set_font("helvetica", size=7)
    pdf.set_draw_color(220, 220, 220)
    for i in range(5):
        y = top + height - height * i / 4
        pdf.line(left, y, left + width, y)
        pdf.set_xy(pdf.l_margin, y - 2)
        pdf.cell(10, 4, f"{step * i:,}", align="R")
    slot = width / len(days)
    label_every = max(1, round(len(days) / 16))
    pdf.set_fill_color(*ACCENT)
    for i, day in enumerate(days):
        bar = height * day["calls"] / top_value
        x = left + i * slot + slot * 0.15
        if bar > 0:
            pdf.rect(x, top + height - bar, slot * 0.7, bar, style="F")
            if len(days) <= 31:
                pdf.set_xy(x - 2, top + height - bar - 4)
                pdf.cell(slot * 0.7 + 4, 4, str(day["calls"]), align="C")
        if i % label_every == 0:
            when: date = day["date"]
            pdf.set_xy(left + i * slot - 4, top + height + 1)
            pdf.cell(slot + 8, 4, when.strftime("%m-%d"), align="C")
    pdf.set_draw_color(0, 0, 0)
    pdf.set_fill_color(255, 255, 255)
    pdf.line(left, top + height, left + width, top + height)
    pdf.set_y(top + height + 7)


def _summary(pdf: _Report, report: dict[str, Any]) -> None:
    pdf.heading("Calls per webhook")
    header = ["Webhook", "Calls", "Successful", "Failed", "Pending", "Success rate", *CHANNEL_TYPES]
    rows = [
        [
            w["name"],
            w["calls"],
            w["successful"],
            w["failed"],
            w["pending"],
            _pct(w["success_rate"]),
            *(w["deliveries"].get(c, 0) for c in CHANNEL_TYPES),
        ]
        for w in [*report["webhooks"], {**report["total"], "name": "TOTAL"}]
    ]
    # A channel column is as wide as its name needs (PUSH_NOTIF: 24), so a new channel gets one too.
    widths = [60, 20, 22, 20, 20, 25, *(max(20, round(2.4 * len(c))) for c in CHANNEL_TYPES)]
    pdf.grid(header, rows, widths)
    pdf.note("Success rate: successful calls out of finished ones. Channel columns count deliveries.")
    pdf.heading("Incidents per webhook")
    rows = [
        [
            w["name"],
            w["incidents"],
            w["incidents_acknowledged"],
            _duration(w["mtta_seconds"]),
            w["incidents_resolved"],
            _duration(w["mttr_seconds"]),
        ]
        for w in [*report["webhooks"], {**report["total"], "name": "TOTAL"}]
    ]
    pdf.grid(
        ["Webhook", "Incidents", "Acknowledged", "MTTA", "Resolved", "MTTR"], rows, [60, 22, 26, 22, 22, 22]
    )
    pdf.note(
        "Incidents opened in this range. MTTA / MTTR: mean time from an incident's first alert to its "
        "acknowledgement / resolution, over the incidents that were acknowledged / resolved (as "
        "PagerDuty counts them); one still open is left out of the mean."
    )


def _receipts(pdf: _Report, channels: list[dict[str, Any]], overall: dict[str, Any] | None) -> None:
    """What the providers reported, per channel and overall (engine.reports.queries.receipts)."""
    pdf.heading("What the providers reported")
    header = ["Channel", "Delivered", "Undelivered", "Delivered rate", "Median to delivered", "Answer rate"]
    rows = [
        [
            c["channel"] or "ALL",
            c["receipts_delivered"],
            c["receipts_undelivered"],
            _pct(c["delivered_rate"]),
            _duration(
                c["time_to_delivered_p50_ms"] / 1000 if c["time_to_delivered_p50_ms"] is not None else None
            ),
            _pct(c["answer_rate"]),
        ]
        for c in [*channels, *([{**overall, "channel": None}] if overall else [])]
    ]
    pdf.grid(header, rows, [30, 24, 26, 30, 38, 26])
    pdf.note(
        "Receipts: what Twilio said became of an SMS or a call after taking it (email and push confirm "
        "nothing more). Delivered rate: delivered out of delivered and undelivered. Median to "
        "delivered: from fan-out to reaching the person (a call: when it was answered). Answer rate: "
        "calls answered by a person, out of those that ended."
    )


def _detailed(pdf: _Report, report: dict[str, Any]) -> None:
    pdf.heading("Every call and its deliveries")
    header = [
        "Received",
        "Webhook",
        "Title",
        "Severity",
        "Channel",
        "Target",
        "Status",
        "Receipt",
        "Attempts",
        "Latency ms",
    ]
    rows = []
    for alert in report["alerts"]:
        for d in alert["deliveries"] or [{}]:
            rows.append(
                [
                    alert["received_at"],
                    alert["webhook"],
                    alert["title"][:45],
                    alert["severity"],
                    d.get("channel"),
                    d.get("target"),
                    d.get("status", alert["status"]),
                    d.get("receipt_status"),
                    d.get("attempts"),
                    d.get("latency_ms"),
                ]
            )
    pdf.grid(header, rows, [32, 35, 50, 18, 22, 35, 18, 22, 15, 20])
    if report["pages"]:
        pdf.heading("Pages sent by escalation (and other messages of no call)")
        header = [
            "Sent",
            "Webhook",
            "Incidents",
            "Kind",
            "Channel",
            "Target",
            "Status",
            "Receipt",
            "Attempts",
            "Latency ms",
        ]
        rows = [
            [
                p["sent_at"],
                p["webhook"],
                (p["incidents"] or "")[:40],
                p["kind"],
                p["channel"],
                p["target"],
                p["status"],
                p["receipt_status"],
                p["attempts"],
                p["latency_ms"],
            ]
            for p in report["pages"]
        ]
        pdf.grid(header, rows, [32, 35, 50, 18, 22, 35, 18, 22, 15, 20])
    if report["truncated"]:
        pdf.note(
            f"Only the first {len(report['alerts'])} calls and {len(report['pages'])} pages are shown;"
            " the CSV format has them all."
        )
    _receipts(pdf, report["receipts"]["channels"], report["receipts"]["overall"])


def _incidents(pdf: _Report, report: dict[str, Any]) -> None:
    pdf.heading("Incidents opened")
    header = [
        "#",
        "Webhook",
        "Title",
        "Severity",
        "Alerts",
        "Opened",
        "Acknowledged",
        "To ack",
        "Acknowledged by",
        "Resolved",
        "To resolve",
    ]
    rows = [
        [
            i["number"],
            i["webhook"],
            i["title"][:60],
            i["severity"],
            i["alert_count"],
            _minute(i["opened_at"]),
            _minute(i["acknowledged_at"]),
            _duration(i["seconds_to_acknowledge"]),
            i["acknowledged_by"],
            _minute(i["resolved_at"]),
            _duration(i["seconds_to_resolve"]),
        ]
        for i in report["incidents"]
    ]
    pdf.grid(header, rows, [10, 28, 50, 15, 12, 26, 26, 15, 45, 26, 17])
    pdf.note(
        "Times run from an incident's first alert. Acknowledged by: a user, the sender (its acknowledge "
        "event) or the system. Not yet acknowledged or resolved: '-'."
    )
    if report["truncated"]:
        pdf.note(
            f"Only the first {len(report['incidents'])} incidents are shown; the CSV format has them all."
        )


def _performance(pdf: _Report, report: dict[str, Any]) -> None:
    pdf.heading("Delivery latency and reliability per channel")
    header = [
        "Channel",
        "Deliveries",
        "Delivered",
        "Failed",
        "Pending",
        "Cancelled",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "Retry rate",
        "Failure rate",
    ]
    rows = [
        [
            c["channel"] or "ALL",
            c["deliveries"],
            c["delivered"],
            c["failed"],
            c["pending"],
            c["cancelled"],
            c["latency_p50_ms"],
            c["latency_p95_ms"],
            c["latency_p99_ms"],
            _pct(c["retry_rate"]),
            _pct(c["failure_rate"]),
        ]
        for c in [*report["channels"], {**report["overall"], "channel": None}]
    ]
    pdf.grid(header, rows, [30, 24, 22, 18, 20, 22, 22, 22, 22, 24, 26])
    pdf.note(
        "Latency: from fan-out to delivery, delivered deliveries only. Cancelled: pages not sent "
        "because their incident was acknowledged or resolved first. Retry rate: deliveries needing "
        "more than one attempt, out of those not cancelled. Failure rate: failed out of finished."
    )
    _receipts(pdf, report["channels"], report["overall"])
    pdf.heading("Busiest hours (UTC)")
    pdf.grid(
        ["Hour", "Calls"],
        [[f"{h['hour']:02d}:00-{h['hour']:02d}:59", h["calls"]] for h in report["busiest_hours"]],
        [40, 30],
    )
