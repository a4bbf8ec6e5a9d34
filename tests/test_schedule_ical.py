"""The iCalendar feed of computed shifts, read back with the icalendar package (engine.oncall.ical)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import icalendar

from engine.oncall import ical
from engine.oncall.model import Override, Shift
from engine.oncall.schedules import shifts
from tests.support.schedules import new_york, utc

NOW = utc("2025-03-01 08:00")


def events(feed: bytes) -> list[icalendar.Event]:
    return list(icalendar.Calendar.from_ical(feed).walk("VEVENT"))


def read_back(feed: bytes) -> list[tuple[str, datetime, datetime]]:
    """(user, start, end) of each event; users come back from the summary (no names given)."""
    return [
        (
            str(event["SUMMARY"]).removeprefix("On call: "),
            event.decoded("DTSTART").astimezone(UTC),
            event.decoded("DTEND").astimezone(UTC),
        )
        for event in events(feed)
    ]


def week() -> list[Shift]:
    # Fri 7 Mar to Wed 12 Mar 2025 in New York: spring-forward, and the Tuesday override.
    return shifts(new_york(), utc("2025-03-07 05:00"), utc("2025-03-12 04:00"))


def test_the_feed_read_back_gives_the_same_shifts_in_utc() -> None:
    found = week()
    feed = ical.render(found, calendar_name="Ops on call", uid_namespace="schedule-1", now=NOW)
    assert read_back(feed) == [(shift.user, shift.start, shift.end) for shift in found]
    assert b"TZID" not in feed and b"VTIMEZONE" not in feed
    assert b"DTSTART:20250310T130000Z" in feed  # erin's Monday, 09:00 EDT


def test_the_feed_in_the_schedules_zone_carries_its_vtimezone() -> None:
    found = week()
    feed = ical.render(
        found, calendar_name="Ops on call", uid_namespace="schedule-1", now=NOW, time_zone="America/New_York"
    )
    assert read_back(feed) == [(shift.user, shift.start, shift.end) for shift in found]
    calendar = icalendar.Calendar.from_ical(feed)
    (zone,) = calendar.walk("VTIMEZONE")
    assert zone["TZID"] == "America/New_York"
    # The wall times a calendar shows: Fri 09:00 EST and Mon 09:00 EDT, both at 09:00 local.
    assert b"DTSTART;TZID=America/New_York:20250307T090000" in feed
    assert b"DTSTART;TZID=America/New_York:20250310T090000" in feed
    assert b"DTSTART;TZID=America/New_York:20250311T120000" in feed  # the override, Tue 12:00


def test_the_calendar_has_its_name_and_events_their_stamp_and_sources() -> None:
    feed = ical.render(
        week(), calendar_name="Ops on call", uid_namespace="s", now=NOW, names={"frank": "Frank F."}
    )
    calendar = icalendar.Calendar.from_ical(feed)
    assert calendar["X-WR-CALNAME"] == "Ops on call"
    assert calendar["VERSION"] == "2.0" and calendar["PRODID"]
    found = events(feed)
    assert {event.decoded("DTSTAMP") for event in found} == {NOW}
    assert {str(event["TRANSP"]) for event in found} == {"TRANSPARENT"}
    override = next(event for event in found if "Frank" in str(event["SUMMARY"]))
    assert str(override["SUMMARY"]) == "On call: Frank F."
    assert str(override["DESCRIPTION"]) == "From overrides[0]"


def test_uids_are_unique_and_stay_put_when_the_feed_is_fetched_again_later() -> None:
    first = ical.render(week(), calendar_name="c", uid_namespace="schedule-1", now=NOW)
    # A day later the range moved on by a day and the clock (DTSTAMP) too.
    later = shifts(new_york(), utc("2025-03-08 05:00"), utc("2025-03-13 04:00"))
    second = ical.render(later, calendar_name="c", uid_namespace="schedule-1", now=NOW + timedelta(days=1))
    uids_first = {str(event["UID"]): event for event in events(first)}
    uids_second = {str(event["UID"]): event for event in events(second)}
    assert len(uids_first) == len(events(first))
    # Every shift starting inside both ranges keeps its UID; alice's last one grew (the range's
    # end moved from Wed 00:00 to Thu 00:00 EDT, through erin's Wednesday) but is the same event.
    shared = {uid for uid, event in uids_first.items() if event.decoded("DTSTART") >= utc("2025-03-08 05:00")}
    assert shared <= set(uids_second)
    alice = next(
        uid for uid, event in uids_first.items() if event.decoded("DTSTART") == utc("2025-03-11 22:00")
    )
    assert uids_second[alice].decoded("DTEND") == utc("2025-03-12 13:00")


def test_uids_differ_between_feeds_and_between_users() -> None:
    shift = Shift("alice", utc("2025-03-10 13:00"), utc("2025-03-17 13:00"))
    assert ical.shift_uid("schedule-1", shift) != ical.shift_uid("schedule-2", shift)
    assert ical.shift_uid("schedule-1", shift) != ical.shift_uid(
        "schedule-1", Shift("bob", shift.start, shift.end)
    )


def test_a_users_feed_holds_only_their_shifts() -> None:
    schedule = new_york()
    extra = Override("alice", utc("2025-03-20 00:00"), utc("2025-03-20 06:00"))
    schedule = replace(schedule, overrides=(*schedule.overrides, extra))
    mine = [
        shift
        for shift in shifts(schedule, utc("2025-03-01 00:00"), utc("2025-04-01 00:00"))
        if shift.user == "alice"
    ]
    feed = ical.render(mine, calendar_name="alice", uid_namespace="user-alice", now=NOW)
    assert read_back(feed) == [
        # Week 9 (Mon 10 Mar 09:00 EDT to Mon 17 Mar 09:00 EDT) less business hours and frank's
        # override; business-hours evenings and weekends only.
        ("alice", utc("2025-03-10 21:00"), utc("2025-03-11 13:00")),
        ("alice", utc("2025-03-11 22:00"), utc("2025-03-12 13:00")),
        ("alice", utc("2025-03-12 21:00"), utc("2025-03-13 13:00")),
        ("alice", utc("2025-03-13 21:00"), utc("2025-03-14 13:00")),
        ("alice", utc("2025-03-14 21:00"), utc("2025-03-17 13:00")),
        # Thu 20 Mar 00:00-06:00Z (Wed 20:00 to Thu 02:00 EDT), inside bob's week: the override.
        ("alice", utc("2025-03-20 00:00"), utc("2025-03-20 06:00")),
        # Mon 31 Mar starts week 12 (12 % 3 = 0): alice again after business hours, to the range's end.
        ("alice", utc("2025-03-31 21:00"), utc("2025-04-01 00:00")),
    ]


def test_an_empty_feed_is_still_a_calendar() -> None:
    feed = ical.render([], calendar_name="quiet", uid_namespace="s", now=NOW, time_zone="Europe/Berlin")
    calendar = icalendar.Calendar.from_ical(feed)
    assert calendar["X-WR-CALNAME"] == "quiet"
    assert events(feed) == []
