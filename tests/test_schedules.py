"""Who is on call: layers, overrides, DST and the limits of a question (engine.oncall).

Expected values are worked out by hand in the comments (dates, weekdays, offsets), not recomputed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from engine.errors import ValidationError
from engine.oncall.localtime import to_instant
from engine.oncall.model import ActiveHours, Override, Rotation, Schedule, Shift, ShiftUnit, Source
from engine.oncall.schedules import on_call, shifts
from engine.oncall.validation import validate_schedule
from tests.support.schedules import new_york, utc

BASE, BUSINESS, OVERRIDE = Source("rotation", 0), Source("rotation", 1), Source("override", 0)
ZONE_BERLIN = "Europe/Berlin"


def rows(found: list[Shift]) -> list[tuple[str, datetime, datetime]]:
    return [(shift.user, shift.start, shift.end) for shift in found]


# The scenario (tests/support/schedules.py). Week k after Mon 6 Jan: 8 = 3 Mar (carol, 8 % 3 = 2),
# 9 = 10 Mar (alice), 42 = 27 Oct (alice), 43 = 3 Nov (bob): 3 Nov is 301 days = 43 weeks after 6 Jan.
# Day d after 6 Jan: 7 Mar = 60 (dave), 10 Mar = 63 (erin), 11 Mar = 64 (dave), 12 Mar = 65 (erin),
# 31 Oct = 298 (dave), 3 Nov = 301 (erin).
NEW_YORK_ANSWERS = [
    ("2025-01-06 13:59", []),  # Mon 08:59 EST: before either rotation's first handoff
    ("2025-03-07 15:00", ["dave"]),  # Fri 10:00 EST, business hours, day 60
    ("2025-03-07 21:59", ["dave"]),  # Fri 16:59 EST
    ("2025-03-07 22:00", ["carol"]),  # Fri 17:00 EST: business hours over (end exclusive), week 8
    ("2025-03-08 17:00", ["carol"]),  # Sat 12:00 EST: weekends have no business hours
    ("2025-03-09 06:59", ["carol"]),  # Sun 01:59 EST, the last minute before spring-forward
    ("2025-03-09 07:00", ["carol"]),  # Sun 03:00 EDT, the first instant after it
    ("2025-03-10 12:59", ["carol"]),  # Mon 08:59 EDT: week 8 until 09:00 local
    ("2025-03-10 13:00", ["erin"]),  # Mon 09:00 EDT (not 14:00Z: the local clock), day 63
    ("2025-03-10 21:00", ["alice"]),  # Mon 17:00 EDT: base beneath, handed to week 9 at 09:00
    ("2025-03-11 15:59", ["dave"]),  # Tue 11:59 EDT, day 64
    ("2025-03-11 16:00", ["frank"]),  # Tue 12:00 EDT: the override, over the business layer
    ("2025-03-11 21:30", ["frank"]),  # Tue 17:30 EDT: still the override, now over the base
    ("2025-03-11 22:00", ["alice"]),  # Tue 18:00 EDT: override over (end exclusive)
    ("2025-03-12 13:00", ["erin"]),  # Wed 09:00 EDT, day 65
    ("2025-10-31 20:00", ["dave"]),  # Fri 16:00 EDT, day 298
    ("2025-11-02 05:30", ["alice"]),  # Sun 01:30 EDT, the first of the two 01:30s, week 42
    ("2025-11-02 06:30", ["alice"]),  # Sun 01:30 EST, the second one
    ("2025-11-03 13:59", ["alice"]),  # Mon 08:59 EST: 7 x 24 h after 09:00 EDT would be bob already
    ("2025-11-03 14:00", ["erin"]),  # Mon 09:00 EST, day 301
    ("2025-11-03 22:00", ["bob"]),  # Mon 17:00 EST: week 43 began at 09:00 EST
]


@pytest.mark.parametrize(("at", "expected"), NEW_YORK_ANSWERS)
def test_who_is_on_call_in_new_york_across_both_dst_changes(at: str, expected: list[str]) -> None:
    assert on_call(new_york(), utc(at)) == expected


def test_on_call_takes_any_offset_and_means_the_instant() -> None:
    tuesday_noon_edt = datetime(2025, 3, 11, 12, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert on_call(new_york(), tuesday_noon_edt) == ["frank"]


def test_the_week_of_the_spring_forward_as_final_shifts() -> None:
    # Fri 7 Mar 00:00 EST (05:00Z) to Wed 12 Mar 00:00 EDT (04:00Z).
    found = shifts(new_york(), utc("2025-03-07 05:00"), utc("2025-03-12 04:00"))
    assert rows(found) == [
        ("carol", utc("2025-03-07 05:00"), utc("2025-03-07 14:00")),  # until Fri 09:00 EST
        ("dave", utc("2025-03-07 14:00"), utc("2025-03-07 22:00")),  # Fri 09:00-17:00 EST
        # the weekend and Monday morning; the base handoff (09:00 EDT) hides under business hours
        ("carol", utc("2025-03-07 22:00"), utc("2025-03-10 13:00")),
        ("erin", utc("2025-03-10 13:00"), utc("2025-03-10 21:00")),  # Mon 09:00-17:00 EDT
        ("alice", utc("2025-03-10 21:00"), utc("2025-03-11 13:00")),
        ("dave", utc("2025-03-11 13:00"), utc("2025-03-11 16:00")),  # Tue 09:00-12:00 EDT
        ("frank", utc("2025-03-11 16:00"), utc("2025-03-11 22:00")),  # the override
        ("alice", utc("2025-03-11 22:00"), utc("2025-03-12 04:00")),
    ]
    assert [shift.sources for shift in found] == [
        (BASE,),
        (BUSINESS,),
        (BASE,),
        (BUSINESS,),
        (BASE,),
        (BUSINESS,),
        (OVERRIDE,),
        (BASE,),
    ]


def test_a_weekly_handoff_stays_at_monday_0900_local() -> None:
    base = Schedule("America/New_York", (new_york().rotations[0],))
    # Mon 3 Mar 09:00 EST = 14:00Z, Mon 10 Mar 09:00 EDT = 13:00Z (6 days 23 hours later),
    # Mon 27 Oct 09:00 EDT = 13:00Z, Mon 3 Nov 09:00 EST = 14:00Z (7 days 1 hour later).
    assert rows(shifts(base, utc("2025-03-03 00:00"), utc("2025-03-17 00:00"))) == [
        ("bob", utc("2025-03-03 00:00"), utc("2025-03-03 14:00")),
        ("carol", utc("2025-03-03 14:00"), utc("2025-03-10 13:00")),
        ("alice", utc("2025-03-10 13:00"), utc("2025-03-17 00:00")),
    ]
    assert rows(shifts(base, utc("2025-10-27 00:00"), utc("2025-11-10 00:00"))) == [
        ("carol", utc("2025-10-27 00:00"), utc("2025-10-27 13:00")),
        ("alice", utc("2025-10-27 13:00"), utc("2025-11-03 14:00")),
        ("bob", utc("2025-11-03 14:00"), utc("2025-11-10 00:00")),
    ]


def berlin(rotation: Rotation) -> Schedule:
    return Schedule(ZONE_BERLIN, (rotation,))


# Berlin 2025: Sun 30 Mar 02:00 CET -> 03:00 CEST (at 01:00Z); Sun 26 Oct 03:00 CEST -> 02:00 CET
# (at 01:00Z). CET = UTC+1, CEST = UTC+2. Handoffs at 02:30 local, daily: a on even days, b on odd.


def test_berlin_spring_forward_daily_handoff_at_0230_happens_at_0300() -> None:
    # Day 0 = Mon 24 Mar: 28 Mar (4) a, 29 Mar (5) b, 30 Mar (6) a, 31 Mar (7) b.
    # Handoffs: 29 Mar 02:30 CET = 01:30Z; 30 Mar 02:30 does not exist -> 03:00 CEST = 01:00Z;
    # 31 Mar 02:30 CEST = 00:30Z.
    schedule = berlin(Rotation(("a", "b"), 1, ShiftUnit.DAYS, datetime(2025, 3, 24, 2, 30)))
    assert rows(shifts(schedule, utc("2025-03-29 00:00"), utc("2025-04-01 00:00"))) == [
        ("a", utc("2025-03-29 00:00"), utc("2025-03-29 01:30")),
        ("b", utc("2025-03-29 01:30"), utc("2025-03-30 01:00")),  # 23 h 30 min
        ("a", utc("2025-03-30 01:00"), utc("2025-03-31 00:30")),  # 23 h 30 min
        ("b", utc("2025-03-31 00:30"), utc("2025-04-01 00:00")),
    ]
    assert on_call(schedule, utc("2025-03-30 00:59:59")) == ["b"]  # 01:59:59 CET
    assert on_call(schedule, utc("2025-03-30 01:00")) == ["a"]  # 03:00 CEST


def test_berlin_fall_back_daily_handoff_at_0230_happens_at_the_first_0230() -> None:
    # Day 0 = Mon 20 Oct: 25 Oct (5) b, 26 Oct (6) a, 27 Oct (7) b.
    # Handoffs: 25 Oct 02:30 CEST = 00:30Z; 26 Oct 02:30 happens twice -> the first, CEST = 00:30Z;
    # 27 Oct 02:30 CET = 01:30Z.
    schedule = berlin(Rotation(("a", "b"), 1, ShiftUnit.DAYS, datetime(2025, 10, 20, 2, 30)))
    assert rows(shifts(schedule, utc("2025-10-25 00:00"), utc("2025-10-28 00:00"))) == [
        ("a", utc("2025-10-25 00:00"), utc("2025-10-25 00:30")),
        ("b", utc("2025-10-25 00:30"), utc("2025-10-26 00:30")),  # 24 h
        ("a", utc("2025-10-26 00:30"), utc("2025-10-27 01:30")),  # 25 h: the repeated hour
        ("b", utc("2025-10-27 01:30"), utc("2025-10-28 00:00")),
    ]
    assert on_call(schedule, utc("2025-10-26 00:29")) == ["b"]  # 02:29 CEST
    assert on_call(schedule, utc("2025-10-26 01:30")) == ["a"]  # the second 02:30 (CET): no handoff


def test_berlin_weekly_handoffs_at_sunday_0230_through_both_changes() -> None:
    # Sun 23 Mar 02:30 CET = 01:30Z (first), Sun 30 Mar 02:30 (gap) -> 01:00Z, Sun 6 Apr 02:30 CEST
    # = 00:30Z. Sun 19 Oct 02:30 CEST = 00:30Z, Sun 26 Oct first 02:30 = 00:30Z, Sun 2 Nov 02:30 CET
    # = 01:30Z.
    spring = berlin(Rotation(("a", "b"), 1, ShiftUnit.WEEKS, datetime(2025, 3, 23, 2, 30)))
    assert rows(shifts(spring, utc("2025-03-23 00:00"), utc("2025-04-07 00:00"))) == [
        ("a", utc("2025-03-23 01:30"), utc("2025-03-30 01:00")),  # nobody before the first handoff
        ("b", utc("2025-03-30 01:00"), utc("2025-04-06 00:30")),
        ("a", utc("2025-04-06 00:30"), utc("2025-04-07 00:00")),
    ]
    autumn = berlin(Rotation(("a", "b"), 1, ShiftUnit.WEEKS, datetime(2025, 10, 19, 2, 30)))
    assert rows(shifts(autumn, utc("2025-10-19 00:30"), utc("2025-11-03 00:00"))) == [
        ("a", utc("2025-10-19 00:30"), utc("2025-10-26 00:30")),
        ("b", utc("2025-10-26 00:30"), utc("2025-11-02 01:30")),  # 7 days and 1 hour
        ("a", utc("2025-11-02 01:30"), utc("2025-11-03 00:00")),
    ]


def test_a_rotation_starting_inside_the_gap_starts_when_the_gap_ends() -> None:
    schedule = berlin(Rotation(("a",), 1, ShiftUnit.DAYS, datetime(2025, 3, 30, 2, 30)))
    assert on_call(schedule, utc("2025-03-30 00:59")) == []
    assert on_call(schedule, utc("2025-03-30 01:00")) == ["a"]


def test_active_hours_crossing_midnight_over_the_spring_forward_night() -> None:
    # Every night 22:00-02:30. Sat 29 Mar 22:00 CET = 21:00Z until Sun 30 Mar 02:30, which does not
    # exist -> 03:00 CEST = 01:00Z: 4 hours. Sun 30 Mar 22:00 CEST = 20:00Z to 00:30Z: 4 h 30 min.
    nights = ActiveHours(frozenset(range(7)), time(22, 0), time(2, 30))
    schedule = berlin(Rotation(("night",), 1, ShiftUnit.WEEKS, datetime(2025, 3, 3, 0, 0), nights))
    assert rows(shifts(schedule, utc("2025-03-29 12:00"), utc("2025-03-31 12:00"))) == [
        ("night", utc("2025-03-29 21:00"), utc("2025-03-30 01:00")),
        ("night", utc("2025-03-30 20:00"), utc("2025-03-31 00:30")),
    ]
    assert on_call(schedule, utc("2025-03-30 00:59")) == ["night"]
    assert on_call(schedule, utc("2025-03-30 01:00")) == []


def test_active_hours_wholly_inside_the_gap_cover_nothing_that_day() -> None:
    # 02:00-02:45 every day: on Sun 30 Mar both ends fall in the gap and become 01:00Z; on Mon
    # 31 Mar it is 02:00-02:45 CEST = 00:00Z-00:45Z.
    early = ActiveHours(frozenset(range(7)), time(2, 0), time(2, 45))
    schedule = berlin(Rotation(("a",), 1, ShiftUnit.DAYS, datetime(2025, 3, 1, 0, 0), early))
    assert rows(shifts(schedule, utc("2025-03-29 12:00"), utc("2025-03-31 12:00"))) == [
        ("a", utc("2025-03-31 00:00"), utc("2025-03-31 00:45")),
    ]


def test_hour_shifts_are_elapsed_hours_across_dst() -> None:
    # 12-hour shifts from Sat 8 Mar 09:00 EST = 14:00Z: handoffs at 14:00Z and 02:00Z every day.
    # After spring-forward 14:00Z is 10:00 EDT, so at Sun 09:30 EDT (13:30Z) b still holds the
    # night shift that began Sat 21:00 EST (9 Mar 02:00Z).
    schedule = Schedule(
        "America/New_York", (Rotation(("a", "b"), 12, ShiftUnit.HOURS, datetime(2025, 3, 8, 9)),)
    )
    assert rows(shifts(schedule, utc("2025-03-08 14:00"), utc("2025-03-10 02:00"))) == [
        ("a", utc("2025-03-08 14:00"), utc("2025-03-09 02:00")),
        ("b", utc("2025-03-09 02:00"), utc("2025-03-09 14:00")),
        ("a", utc("2025-03-09 14:00"), utc("2025-03-10 02:00")),
    ]
    assert on_call(schedule, utc("2025-03-09 13:30")) == ["b"]


def test_a_shift_swap_is_two_overrides_that_do_not_undo_each_other() -> None:
    # alice has week 9 (10-17 Mar), bob week 10 (17-24 Mar); handoffs Mon 09:00 EDT = 13:00Z.
    base = new_york().rotations[0]
    swap = (
        Override("bob", utc("2025-03-10 13:00"), utc("2025-03-17 13:00"), replaces="alice"),
        Override("alice", utc("2025-03-10 13:00"), utc("2025-03-24 13:00"), replaces="bob"),
    )
    schedule = Schedule("America/New_York", (base,), swap)
    assert rows(shifts(schedule, utc("2025-03-10 00:00"), utc("2025-03-25 00:00"))) == [
        ("carol", utc("2025-03-10 00:00"), utc("2025-03-10 13:00")),
        ("bob", utc("2025-03-10 13:00"), utc("2025-03-17 13:00")),
        ("alice", utc("2025-03-17 13:00"), utc("2025-03-24 13:00")),
        ("carol", utc("2025-03-24 13:00"), utc("2025-03-25 00:00")),
    ]


def test_an_override_replacing_someone_else_changes_nothing() -> None:
    schedule = replace(
        new_york(), overrides=(Override("zed", utc("2025-03-12 00:00"), utc("2025-03-13 00:00"), "carol"),)
    )
    assert on_call(schedule, utc("2025-03-12 02:00")) == ["alice"]  # Tue 22:00 EDT, week 9: alice


def test_the_later_override_wins_and_overrides_fill_uncovered_time() -> None:
    overrides = (
        Override("first", utc("2024-12-01 00:00"), utc("2024-12-03 00:00")),
        Override("second", utc("2024-12-02 00:00"), utc("2024-12-02 06:00")),
    )
    schedule = replace(new_york(), overrides=overrides)  # December 2024: before the rotations start
    assert rows(shifts(schedule, utc("2024-12-01 00:00"), utc("2024-12-04 00:00"))) == [
        ("first", utc("2024-12-01 00:00"), utc("2024-12-02 00:00")),
        ("second", utc("2024-12-02 00:00"), utc("2024-12-02 06:00")),
        ("first", utc("2024-12-02 06:00"), utc("2024-12-03 00:00")),
    ]
    assert on_call(schedule, utc("2024-12-03 00:00")) == []


def test_adjacent_stretches_of_one_user_are_one_shift() -> None:
    # alice holds the base week and the business layer: one shift with both sources, however many
    # handoffs and windows lie under it.
    schedule = Schedule(
        "America/New_York",
        (
            Rotation(("alice",), 1, ShiftUnit.DAYS, datetime(2025, 1, 6, 9)),
            Rotation(
                ("alice",),
                1,
                ShiftUnit.DAYS,
                datetime(2025, 1, 6, 9),
                ActiveHours(frozenset({0}), time(9), time(17)),
            ),
        ),
    )
    assert shifts(schedule, utc("2025-03-01 00:00"), utc("2025-03-31 00:00")) == [
        Shift("alice", utc("2025-03-01 00:00"), utc("2025-03-31 00:00"), (BASE, BUSINESS)),
    ]


def test_on_call_agrees_with_shifts_every_ten_minutes_around_both_changes() -> None:
    schedule = new_york()
    for start in (utc("2025-03-06 00:00"), utc("2025-10-30 00:00")):
        end = start + timedelta(days=7)
        found = shifts(schedule, start, end)
        at = start
        while at < end:
            covering = [shift.user for shift in found if shift.start <= at < shift.end]
            assert on_call(schedule, at) == covering, at
            at += timedelta(minutes=10)


def test_local_wall_times_map_to_instants_in_order_through_both_berlin_changes() -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(ZONE_BERLIN)
    for day in (datetime(2025, 3, 30), datetime(2025, 10, 26)):
        instants = [to_instant(day + timedelta(minutes=m), tz) for m in range(24 * 60)]
        assert instants == sorted(instants)
    assert to_instant(datetime(2025, 3, 30, 2, 0), tz) == utc("2025-03-30 01:00")  # the gap's start
    assert to_instant(datetime(2025, 3, 30, 3, 0), tz) == utc("2025-03-30 01:00")  # and its end


def test_a_question_may_span_90_days_and_no_more() -> None:
    start = utc("2025-01-01 00:00")
    assert shifts(new_york(), start, start + timedelta(days=90))
    with pytest.raises(ValidationError) as error:
        shifts(new_york(), start, start + timedelta(days=90, seconds=1))
    assert error.value.field == "end"
    assert "90 days" in error.value.message


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (utc("2025-01-02 00:00"), utc("2025-01-01 00:00"), "end"),
        (utc("2025-01-01 00:00"), utc("2025-01-01 00:00"), "end"),
        (datetime(2025, 1, 1), utc("2025-01-02 00:00"), "start"),
        (utc("2025-01-01 00:00"), datetime(2025, 1, 2), "end"),
        (datetime(9999, 12, 30, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), "start"),
    ],
)
def test_a_question_needs_aware_instants_in_order(start: datetime, end: datetime, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        shifts(new_york(), start, end)
    assert error.value.field == field


def test_on_call_needs_an_aware_instant() -> None:
    with pytest.raises(ValidationError) as error:
        on_call(new_york(), datetime(2025, 3, 11, 12))
    assert error.value.field == "at"


def _rotation(**changes: object) -> Rotation:
    return replace(Rotation(("a", "b"), 1, ShiftUnit.DAYS, datetime(2025, 1, 6, 9)), **changes)  # type: ignore[arg-type]


def _hours(**changes: object) -> ActiveHours:
    return replace(ActiveHours(frozenset({0}), time(9), time(17)), **changes)  # type: ignore[arg-type]


def _override(**changes: object) -> Override:
    return replace(Override("a", utc("2025-01-01 00:00"), utc("2025-01-02 00:00")), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (Schedule("Mars/Olympus_Mons", ()), "time_zone"),
        (Schedule("localtime", ()), "time_zone"),  # the host's own zone, not a name
        (Schedule("Factory", ()), "time_zone"),
        (Schedule("../../etc/passwd", ()), "time_zone"),
        (Schedule("", ()), "time_zone"),
        (Schedule("UTC", (_rotation(), _rotation(participants=()))), "rotations[1].participants"),
        (Schedule("UTC", (_rotation(participants=("a", "")),)), "rotations[0].participants[1]"),
        (Schedule("UTC", (_rotation(shift_length=0),)), "rotations[0].shift_length"),
        (Schedule("UTC", (_rotation(shift_length=-2),)), "rotations[0].shift_length"),
        (Schedule("UTC", (_rotation(shift_length=True),)), "rotations[0].shift_length"),
        (
            Schedule("UTC", (_rotation(shift_length=54, shift_unit=ShiftUnit.WEEKS),)),
            "rotations[0].shift_length",
        ),
        (Schedule("UTC", (_rotation(shift_unit="months"),)), "rotations[0].shift_unit"),
        (Schedule("UTC", (_rotation(start=utc("2025-01-06 09:00")),)), "rotations[0].start"),
        (Schedule("UTC", (_rotation(active_hours=_hours(end=time(9))),)), "rotations[0].active_hours.end"),
        (
            Schedule("UTC", (_rotation(active_hours=_hours(weekdays=frozenset())),)),
            "rotations[0].active_hours.weekdays",
        ),
        (
            Schedule("UTC", (_rotation(active_hours=_hours(weekdays=frozenset({7}))),)),
            "rotations[0].active_hours.weekdays",
        ),
        (Schedule("UTC", (), (_override(), _override(end=utc("2025-01-01 00:00")))), "overrides[1].end"),
        (Schedule("UTC", (), (_override(end=utc("2024-12-31 00:00")),)), "overrides[0].end"),
        (Schedule("UTC", (), (_override(start=datetime(2025, 1, 1)),)), "overrides[0].start"),
        (Schedule("UTC", (), (_override(replaces=""),)), "overrides[0].replaces"),
        # near datetime's limits shift arithmetic would overflow: refused, not a crash
        (Schedule("UTC", (_rotation(start=datetime(1, 1, 1)),)), "rotations[0].start"),
        (Schedule("UTC", (), (_override(end=datetime(9999, 12, 31, tzinfo=UTC)),)), "overrides[0].end"),
    ],
)
def test_a_bad_definition_is_refused_naming_its_field(schedule: Schedule, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        validate_schedule(schedule)
    assert error.value.field == field
    assert error.value.message.startswith(field)
    with pytest.raises(ValidationError):  # the computation refuses it too, rather than crash
        on_call(schedule, utc("2025-01-01 12:00"))


def test_a_good_definition_passes_and_answers_its_zone() -> None:
    assert validate_schedule(new_york()).key == "America/New_York"
    assert on_call(Schedule("UTC", ()), datetime.now(UTC)) == []
