"""The viewer's time zone, and instants written and read in it (presentation only).

The zone a page shows times in: ``?tz=`` when the page was asked for one (for that page view),
else the one the viewer saved on their profile (``users.time_zone``), else the browser's own
(static/timezone.js keeps it in the ``monoduty_tz`` cookie), else UTC. A local date and time a
person typed into a form is turned into an instant by the schedules' own rule
(engine.oncall.localtime: a time a DST change skips lands after the change, a repeated one is the
first).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from api.state import USER
from engine.auth.users import User
from engine.errors import ValidationError
from engine.oncall.localtime import to_instant, to_wall
from engine.oncall.validation import time_zone

COOKIE = "monoduty_tz"
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows


def zone_or_none(name: object) -> ZoneInfo | None:
    try:
        return time_zone(name)
    except ValidationError:
        return None


def viewer_zone(request: web.Request) -> tuple[ZoneInfo, str]:
    """(the zone, where it came from: "asked", "saved", "browser" or "default")."""
    asked = zone_or_none(request.query.get("tz"))
    if asked is not None:
        return asked, "asked"
    user: User | None = request.get(USER)
    saved = zone_or_none(user.time_zone) if user is not None and user.time_zone else None
    if saved is not None:
        return saved, "saved"
    browser = zone_or_none(request.cookies.get(COOKIE))
    if browser is not None:
        return browser, "browser"
    return ZoneInfo("UTC"), "default"


def day_and_time(moment: datetime, tz: ZoneInfo) -> str:
    """ "Tue 1 Dec 09:00" on the zone's clock."""
    local = moment.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def day_text(day: date) -> str:
    """ "Tue 1 Dec"."""
    return f"{day:%a} {day.day} {day:%b}"


def local_input(moment: datetime, tz: ZoneInfo) -> str:
    return to_wall(moment, tz).strftime(LOCAL_INPUT)


def from_local_input(value: str, tz: ZoneInfo) -> str | None:
    """A datetime-local value read in ``tz``, as the ISO instant the engine takes; None if it is
    not one (the engine then says what is wrong with the field)."""
    try:
        wall = datetime.fromisoformat(value)
    except ValueError:
        return None
    if wall.tzinfo is not None:
        return None
    return to_instant(wall, tz).isoformat()


def until_text(then: datetime, now: datetime) -> str:
    """ "in 3 h 20 min", "in 2 d 4 h"."""
    minutes = max(int((then - now).total_seconds() // 60), 0)
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"
    days, hours = divmod(hours, 24)
    return f"in {days} d {hours} h" if hours else f"in {days} d"
