"""The status page: what ``/api/status``, ``/api/response-time`` and ``/api/uptime`` answer,
for anyone signed in, as words (every level written out, not only coloured).

Each part is read on its own: Redis away leaves the response times unknown ("unavailable")
while the page still shows what the database says, and the other way round.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api import status as api_status
from api.dashboard import views
from api.dashboard.render import fragment_for, render
from api.state import POOL, REDIS, SETTINGS
from engine.errors import Unavailable
from engine.observability import status

routes = web.RouteTableDef()
FRAGMENT = "status-body"
LEVEL_LABELS = {
    "operational": "Operational",
    "degraded": "Degraded",
    "down": "Down",
    "unknown": "Unknown",
}
COMPONENT_LABELS = {
    "database": "Database (PostgreSQL)",
    "redis": "Queue store (Redis)",
    "workers": "Workers",
    "queue": "Queue",
}
GROUP_LABELS = {"api": "API", "inbound": "Inbound alerts"}
WINDOW_LABELS = {"last_24h": "Last 24 hours", "last_7d": "Last 7 days", "last_30d": "Last 30 days"}


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "no requests yet"


def _component(name: str, part: dict[str, Any]) -> dict[str, Any]:
    level = str(part["status"])
    details = []
    if "round_trip_ms" in part:
        details.append(
            f"round trip {part['round_trip_ms']} ms" if part["round_trip_ms"] is not None else "no answer"
        )
    if "alive" in part and part["alive"] is not None:
        details.append(f"{part['alive']} alive")
    if part.get("queued") is not None:
        details.append(
            f"{part['queued']} queued, {part['in_progress']} in progress, {part['retrying']} retrying"
        )
        if part.get("oldest_queued_seconds"):
            details.append(f"oldest waiting {part['oldest_queued_seconds']:.0f} s")
    return {
        "name": COMPONENT_LABELS.get(name, name),
        "level": level,
        "label": LEVEL_LABELS.get(level, level),
        "details": ", ".join(details),
    }


@routes.get("/status", name="dashboard.status")
async def status_page(request: web.Request) -> web.Response:
    app = request.app
    checked = await status.check(app[POOL], app[REDIS], app[SETTINGS])
    times: dict[str, Any] | None
    try:
        times = await api_status.response_time_numbers(app)
    except Unavailable:
        times = None
    up: dict[str, Any] | None
    try:
        up = await api_status.uptime_numbers(request)
    except Unavailable:
        up = None
    overall = str(checked["status"])
    context: dict[str, Any] = {
        "section": "status",
        "overall": overall,
        "overall_label": LEVEL_LABELS.get(overall, overall),
        "issues": checked["issues"],
        "checked_at": views.clock_time(checked["checked_at"]),
        "components": [_component(name, part) for name, part in checked["components"].items()],
        "response_times": None
        if times is None
        else [
            {
                "name": "All requests",
                **{k: _ms(times[k]) for k in ("current_ms", "p50_ms", "p95_ms", "p99_ms")},
                "count": times["sample_count"],
            },
            *(
                {
                    "name": GROUP_LABELS.get(g, g),
                    **{k: _ms(n[k]) for k in ("current_ms", "p50_ms", "p95_ms", "p99_ms")},
                    "count": n["sample_count"],
                }
                for g, n in times["groups"].items()
            ),
        ],
        "window_minutes": times["window_seconds"] // 60 if times else 5,
        "uptime": None
        if up is None
        else {
            "started_at": views.clock_time(up["started_at"]),
            "windows": [
                {
                    "name": WINDOW_LABELS.get(name, name),
                    "percentage": f"{w['percentage']:.3f} %"
                    if w["percentage"] is not None
                    else "not measured yet",
                    "samples": w["samples"],
                    "expected": w["expected_samples"],
                }
                for name, w in up["uptime"].items()
            ],
        },
    }
    template = "_status_body.html" if fragment_for(request, FRAGMENT) else "status.html"
    return render(request, template, context)
