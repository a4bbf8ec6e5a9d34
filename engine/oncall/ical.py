"""Computed shifts as an iCalendar feed (RFC 5545), so people see their shifts in their calendar.

One VEVENT per shift. Its UID is a hash of the feed's namespace (e.g. the schedule id), the user and
the shift's start, so a calendar that fetches the feed again updates an event instead of adding a
second one: a shift whose end moves (the feed's range moved on, an override was added later in it)
keeps its UID. A shift that an override cuts in two becomes two events, the second a new one.
A shift clipped by the start of the feed's range gets a new start, so a new UID, every time the
range moves on; that only happens in the past, and subscribed feeds replace their old events.

Events are TRANSPARENT (being on call does not make you busy for meeting invitations). Times are
UTC, or local to ``time_zone`` with its VTIMEZONE when one is given (clients then show the
schedule's own clock, and a client without the zone still has the VTIMEZONE rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import icalendar

from engine.oncall.model import Shift
from engine.oncall.validation import time_zone as load_zone

PRODID = "-//Monoduty//On-call schedule//EN"


def shift_uid(namespace: str, shift: Shift, schedule: str = "") -> str:
    """The stable UID of a shift's event (``schedule``: its id, in a feed of several schedules)."""
    parts = (namespace, shift.user, shift.start.astimezone(UTC).isoformat())
    key = "\x1f".join((*parts, schedule) if schedule else parts)
    return f"{hashlib.sha256(key.encode()).hexdigest()[:32]}@monoduty"


def render(
    shifts: Sequence[Shift],
    *,
    calendar_name: str,
    uid_namespace: str,
    now: datetime,
    time_zone: str | None = None,
    names: Mapping[str, str] | None = None,
    schedules: Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """The feed of ``shifts``: ``now`` is its DTSTAMP, ``names`` maps user ids to display names.

    ``schedules`` (one per shift) is the (id, name) of each shift's schedule, in a feed of several
    (a user's own): the name goes into the event's summary, the id into its UID, so shifts of two
    schedules never share one."""
    names = names or {}
    zone = load_zone(time_zone) if time_zone is not None else None
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("name", calendar_name)  # RFC 7986
    calendar.add("x-wr-calname", calendar_name)  # what Apple, Google and Outlook read
    if zone is not None and shifts:
        first = min(shift.start for shift in shifts).astimezone(zone).date() - timedelta(days=1)
        last = max(shift.end for shift in shifts).astimezone(zone).date() + timedelta(days=1)
        calendar.add_component(icalendar.Timezone.from_tzinfo(zone, first_date=first, last_date=last))
    stamp = now.astimezone(UTC)
    for i, shift in enumerate(shifts):
        schedule_id, label = schedules[i] if schedules is not None else ("", "")
        event = icalendar.Event()
        event.add("uid", shift_uid(uid_namespace, shift, schedule_id))
        event.add("dtstamp", stamp)
        event.add("dtstart", shift.start.astimezone(zone or UTC))
        event.add("dtend", shift.end.astimezone(zone or UTC))
        summary = f"On call: {names.get(shift.user, shift.user)}"
        event.add("summary", f"{summary} ({label})" if label else summary)
        event.add("description", "From " + ", ".join(source.path for source in shift.sources))
        event.add("transp", "TRANSPARENT")
        calendar.add_component(event)
    return calendar.to_ical()
