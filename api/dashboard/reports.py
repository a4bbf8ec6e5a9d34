"""Reports in the dashboard: pick a type, a range and a format, download the file; a chart of
calls and incidents per day, with MTTA and MTTR, for the range picked.

The form is read into the engine's ``ReportRequest`` by ``engine.reports.parse_request`` (its
range rules and messages are the API's), the download is ``POST /api/reports/generate``'s own
answer (api.reports.respond), and the figures are engine.reports.queries'.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api import reports as api_reports
from api.auth import current_user
from api.dashboard import chart
from api.dashboard.render import render
from api.inputs import query
from api.state import CLOCK, POOL, SETTINGS
from engine import reports
from engine.errors import ValidationError
from engine.reports import queries
from engine.validate import UNSET

routes = web.RouteTableDef()
FORMAT_LABELS = {"csv": "CSV (spreadsheet)", "pdf": "PDF", "json": "JSON"}
TYPE_HINTS = {
    "summary": "Per webhook: calls, outcomes, deliveries per channel, MTTA and MTTR",
    "detailed": "Every alert and each of its deliveries",
    "incidents": "Every incident opened, with who acknowledged and resolved it, and when",
    "performance": "Per channel: delivery latency percentiles, retries, failures, receipts",
}
FIELDS = ("type", "from", "to", "format")


def _wanted(request: web.Request, given: dict[str, str], *, default_type: str) -> reports.ReportRequest:
    """The engine's request from the form; a range is both dates or none (the last 7 days)."""
    first, last = given.get("from", "").strip(), given.get("to", "").strip()
    return reports.parse_request(
        type=given.get("type") or default_type,
        format=given.get("format") or UNSET,
        date_range=f"{first} to {last}" if first or last else UNSET,
        today=request.app[CLOCK].now().date(),
        max_days=request.app[SETTINGS].report_max_days,
    )


async def _page(
    request: web.Request, given: dict[str, str], error: ValidationError | None, *, status: int = 200
) -> web.Response:
    user = current_user(request)
    try:
        wanted = _wanted(request, given, default_type="summary")
        shown_error = error
    except ValidationError as exc:  # show the default range's chart, and the mistake at its field
        wanted = _wanted(
            request,
            {"type": given.get("type", "")} if given.get("type") in reports.TYPES else {},
            default_type="summary",
        )
        shown_error, status = exc, 400
    span = wanted.range
    async with request.app[POOL].acquire() as conn:
        calls = await queries.calls_per_day(conn, user.id, span)
        incidents = await queries.incidents_per_day(conn, user.id, span)
        total = (await queries.summary(conn, user.id, span))["total"]
    days = [d["date"] for d in calls]
    drawn = chart.bar_chart(
        days,
        {
            "calls": ([d["calls"] for d in calls], "calls"),
            "incidents": ([d["incidents"] for d in incidents], "incidents"),
        },
    )
    rows = [
        {
            "date": c["date"].isoformat(),
            "calls": c["calls"],
            "incidents": i["incidents"],
            "mtta": chart.duration(i["mtta_seconds"]) if i["incidents"] else "",
            "mttr": chart.duration(i["mttr_seconds"]) if i["incidents"] else "",
        }
        for c, i in zip(calls, incidents, strict=True)
    ]
    errors: dict[str, str] = {}
    if shown_error is not None:
        field = {"date_range": "range"}.get(shown_error.field or "", shown_error.field or "")
        errors[field if field in ("range", "type", "format") else "range"] = shown_error.message.replace(
            "date_range", "The range"
        )
    context: dict[str, Any] = {
        "section": "reports",
        "types": [{"value": t, "label": reports.TITLES[t], "hint": TYPE_HINTS[t]} for t in reports.TYPES],
        "formats": FORMAT_LABELS,
        "values": {
            "type": given.get("type") if given.get("type") in reports.TYPES else wanted.type,
            "format": given.get("format") if given.get("format") in reports.FORMATS else "csv",
            "from": given.get("from", span.first.isoformat()),
            "to": given.get("to", span.last.isoformat()),
        },
        "errors": errors,
        "range": str(span),
        "chart": drawn,
        "rows": rows,
        "total_calls": sum(d["calls"] for d in calls),
        "total_incidents": total["incidents"],
        "mtta": chart.duration(total["mtta_seconds"]),
        "mttr": chart.duration(total["mttr_seconds"]),
        "acknowledged": total["incidents_acknowledged"],
        "resolved": total["incidents_resolved"],
        "max_days": request.app[SETTINGS].report_max_days,
    }
    return render(request, "reports.html", context, status=status)


@routes.get("/reports", name="dashboard.reports")
async def reports_page(request: web.Request) -> web.Response:
    return await _page(request, query(request, *FIELDS), None)


@routes.get("/reports/download", name="dashboard.report_download")
async def download(request: web.Request) -> web.StreamResponse:
    """The file, as the API makes it; a mistake in the form shows the page with it at its field."""
    user = current_user(request)
    given = query(request, *FIELDS)
    try:
        wanted = _wanted(request, given, default_type="")
    except ValidationError as exc:
        return await _page(request, given, exc, status=400)
    response = await api_reports.respond(request, user.id, wanted)
    if wanted.format == "json" and not response.prepared:  # the API's answer, saved as a file
        response.headers["Content-Disposition"] = f'attachment; filename="{wanted.filename}"'
    return response
