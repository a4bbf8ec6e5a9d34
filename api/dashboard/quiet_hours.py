"""The profile page's quiet hours: what it shows of them and what its form becomes.

The form is the engine's QuietHoursInput (engine.oncall.quiet_hours.put, which PUT and PATCH
``/api/me/quiet-hours`` call); it always sends every field, so setting and changing are one
``put``. Its time zone defaults to the viewer's (api.dashboard.zones: the browser's own) until
quiet hours are set, then to theirs. The routes are profile.py's, since a refused form is the
whole profile page drawn again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from api.dashboard.oncall import zones
from api.dashboard.zones import until_text, viewer_zone
from engine.channels.base import SEVERITIES
from engine.oncall.localtime import to_wall
from engine.oncall.quiet_hours import DEFAULT_MIN_SEVERITY, QuietHours, QuietHoursInput
from engine.validate import UNSET

# The engine's field -> (the form's field, its label), for api.dashboard.field_errors.at_field.
FIELDS = {
    "start": ("quiet_start", "Start"),
    "end": ("quiet_end", "End"),
    "time_zone": ("quiet_time_zone", "Time zone"),
    "min_severity": ("quiet_min_severity", "Still page me for"),
}
# min_severity -> what still pages during quiet hours, in the form's words.
STILL_PAGED = {
    "critical": "Critical incidents only",
    "error": "Error and critical",
    "warning": "Warning, error and critical",
    "info": "Everything (nothing waits)",
}
DEFAULTS = {"quiet_start": "22:00", "quiet_end": "07:00", "quiet_min_severity": DEFAULT_MIN_SEVERITY}


def wanted(given: dict[str, str]) -> QuietHoursInput:
    """The form as the engine's input; the engine checks every field (and names the bad one). An
    empty zone or severity is one not given: the engine's "required" and its default."""
    return QuietHoursInput(
        start=given.get("quiet_start", "").strip(),
        end=given.get("quiet_end", "").strip(),
        time_zone=given.get("quiet_time_zone") or UNSET,
        min_severity=given.get("quiet_min_severity") or UNSET,
    )


def section(
    request: web.Request, hours: QuietHours | None, now: datetime, typed: dict[str, str] | None
) -> dict[str, Any]:
    """What the template shows: the quiet hours set (or None), and the form's values: what was
    typed when the engine refused it, else the ones set, else the defaults in the viewer's zone."""
    zone, source = viewer_zone(request)
    shown = None
    if hours is not None:
        until = hours.until(now)
        shown = {
            "start": f"{hours.start:%H:%M}",
            "end": f"{hours.end:%H:%M}",
            "time_zone": hours.time_zone,
            "still_paged": STILL_PAGED[hours.min_severity].lower(),
            "everything": hours.min_severity == SEVERITIES[-1],
            "quiet_now": f"{to_wall(until, ZoneInfo(hours.time_zone)):%H:%M}" if until else "",
            "quiet_left": until_text(until, now) if until else "",
        }
        values = {
            "quiet_start": shown["start"],
            "quiet_end": shown["end"],
            "quiet_time_zone": hours.time_zone,
            "quiet_min_severity": hours.min_severity,
        }
    else:
        values = {**DEFAULTS, "quiet_time_zone": str(zone)}
    return {
        "quiet": shown,
        "quiet_values": {**values, **(typed or {})},
        # "default" (the browser's zone not known yet) lets static/timezone.js draw the page again
        # once in it; never for a refused form, which a reload would post again.
        "quiet_zone_source": "typed" if typed else "set" if hours is not None else source,
        "quiet_viewer_zone": str(zone),
        "zones": zones(),
        "severities": [(s, STILL_PAGED[s]) for s in SEVERITIES],
    }
