"""POST /api/reports/generate: a report as JSON, a streamed CSV, or a PDF."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing

from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_names
from api.responses import ok
from api.state import POOL, REQUEST_ID, SETTINGS
from engine import db, reports
from engine.reports import render_csv, render_pdf

routes = web.RouteTableDef()

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
# The request body's fields: wire name -> the engine's (engine.reports.parse_request).
NAMES = {"type": "type", "dateRange": "date_range", "format": "format"}


def _file_headers(wanted: reports.ReportRequest) -> dict[str, str]:
    """Headers of a file answer: its type and a download name."""
    return {
        "Content-Type": CONTENT_TYPES[wanted.format],
        "Content-Disposition": f'attachment; filename="{wanted.filename}"',
    }


@routes.post("/api/reports/generate")
async def generate(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    asked = fields(await json_body(request), NAMES)
    with wire_names(NAMES):
        wanted = reports.parse_request(**asked, max_days=request.app[SETTINGS].report_max_days)
    return await respond(request, user.id, wanted)


async def respond(
    request: web.Request, user_id: uuid.UUID, wanted: reports.ReportRequest
) -> web.StreamResponse:
    """The report in its format: JSON (the API's answer), a streamed CSV or a PDF (files). The
    dashboard's download answers with this too."""
    async with request.app[POOL].acquire() as conn:
        if wanted.format == "csv":
            return await _stream_csv(request, conn, user_id, wanted)
        report = await reports.build(conn, user_id, wanted)
    if wanted.format == "json":
        return ok(report=report)
    document = await asyncio.to_thread(render_pdf.render, report)
    return web.Response(body=document, headers=_file_headers(wanted))


async def _stream_csv(
    request: web.Request, conn: db.Connection, user_id: uuid.UUID, wanted: reports.ReportRequest
) -> web.StreamResponse:
    """Write each chunk as the cursor yields it; the first chunk comes before the status line,
    so a failure before any row still answers as a JSON error."""
    # Headers are sent at prepare(): the request id middleware's header would come too late.
    response = web.StreamResponse(headers={**_file_headers(wanted), "X-Request-Id": request[REQUEST_ID]})
    async with aclosing(render_csv.stream(conn, user_id, wanted)) as chunks:
        async for chunk in chunks:
            if not response.prepared:
                await response.prepare(request)
            await response.write(chunk)
    await response.write_eof()
    return response
