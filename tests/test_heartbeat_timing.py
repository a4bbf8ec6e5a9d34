"""When a heartbeat's next ping is due: durations, cron times in a zone across DST, and what pings
and sweeps do to its state (engine.heartbeats.timing and .state, plain code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.errors import ValidationError
from engine.heartbeats import HeartbeatStatus, PingKind
from engine.heartbeats.alerts import AlertKind
from engine.heartbeats.state import State, on_ping, on_resume, on_sweep, shown_status
from engine.heartbeats.timing import Timing, cron_after, format_duration, parse_cron, parse_duration

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (" 10M ", 600),
        ("1d2h3m4s", 93784),
    ],
)
def test_durations_read_as_people_write_them(text: str, seconds: int) -> None:
    assert parse_duration(text, "grace", minimum=1) == seconds
    assert parse_duration(format_duration(seconds), "grace", minimum=1) == seconds


@pytest.mark.parametrize(
    "value", ["", "5", "five minutes", "5x", "m", "-5m", "1m1h", "5 m", 300, None, ["5m"]]
)
def test_anything_else_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_duration(value, "grace", minimum=1)
    assert refused.value.field == "grace"
    assert refused.value.message == 'grace must be a duration such as "30s", "5m", "2h" or "1d"'


def test_durations_have_a_floor_and_a_ceiling() -> None:
    with pytest.raises(
        ValidationError, match=r"period must be at least 1m \(MONODUTY_MIN_HEARTBEAT_PERIOD\)"
    ):
        parse_duration("59s", "period", minimum=60)
    assert parse_duration("60s", "period", minimum=60) == 60
    with pytest.raises(ValidationError, match="period must be at most 366d"):
        parse_duration("367d", "period", minimum=60)
    assert format_duration(300) == "5m" and format_duration(5400) == "1h30m"


@pytest.mark.parametrize(
    "value", ["* * * * * *", "0 3 * *", "61 3 * * *", "0 25 * * *", "0 3 31 2 *", "H 3 * * *", "nope", 3, ""]
)
def test_a_cron_must_be_five_fields_that_ever_fire(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_cron(value)
    assert refused.value.field == "cron" and refused.value.message.startswith("cron ")


def test_cron_forms_croniter_reads_are_kept() -> None:
    assert parse_cron("0  3 * * MON-FRI") == "0 3 * * MON-FRI"
    assert parse_cron("*/15 9-17 L * *") == "*/15 9-17 L * *"


def test_a_daily_cron_in_berlin_keeps_its_local_hour_across_both_changes() -> None:
    # 03:00 CET is 02:00 UTC; on 30 March clocks go to CEST, so the next 03:00 is 01:00 UTC, 23 h on.
    assert cron_after("0 3 * * *", BERLIN, utc(2025, 3, 29, 2, 0, 30)) == utc(2025, 3, 30, 1, 0)
    # On 26 October they go back: 03:00 CET is 02:00 UTC again, 25 h after 03:00 CEST.
    assert cron_after("0 3 * * *", BERLIN, utc(2025, 10, 25, 1, 0, 30)) == utc(2025, 10, 26, 2, 0)


def test_a_time_skipped_in_spring_is_expected_at_the_change() -> None:
    # 02:30 does not exist on 30 March: cron daemons run the job at 03:00 CEST (01:00 UTC).
    assert cron_after("30 2 * * *", BERLIN, utc(2025, 3, 29, 1, 31)) == utc(2025, 3, 30, 1, 0)


def test_a_time_repeated_in_autumn_is_expected_once() -> None:
    # 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET): a daily job runs at the first.
    assert cron_after("30 2 * * *", BERLIN, utc(2025, 10, 25, 23, 0)) == utc(2025, 10, 26, 0, 30)
    assert cron_after("30 2 * * *", BERLIN, utc(2025, 10, 26, 0, 30, 5)) == utc(2025, 10, 27, 1, 30)
    # An every-hour job runs in both of the hours.
    after = utc(2025, 10, 26, 0, 30, 5)
    assert cron_after("*/30 * * * *", BERLIN, after) == utc(2025, 10, 26, 1, 0)
    assert cron_after("*/30 * * * *", BERLIN, utc(2025, 10, 26, 1, 0, 5)) == utc(2025, 10, 26, 1, 30)


PERIOD = Timing(period_seconds=60, cron=None, time_zone="UTC", grace_seconds=30)
T0 = utc(2025, 3, 11, 12, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_new_heartbeat_is_not_checked_until_its_first_ping() -> None:
    new = State(HeartbeatStatus.NEW)
    assert on_sweep(PERIOD, new, at(3600)) is None
    up = on_ping(PERIOD, new, PingKind.SUCCESS, at(0))
    assert up.alert is None
    assert (up.state.status, up.state.expected_at, up.state.due_at) == (HeartbeatStatus.UP, at(60), at(90))
    assert shown_status(up.state, at(59)) is HeartbeatStatus.UP
    assert shown_status(up.state, at(60)) is HeartbeatStatus.LATE  # overdue, within its grace
    assert on_sweep(PERIOD, up.state, at(89)) is None


def test_late_then_back() -> None:
    up = on_ping(PERIOD, State(HeartbeatStatus.NEW), PingKind.SUCCESS, at(0)).state
    late = on_sweep(PERIOD, up, at(90))
    assert late is not None and late.alert is AlertKind.LATE
    assert (late.state.status, late.state.down_since, late.state.due_at) == (
        HeartbeatStatus.DOWN,
        at(90),
        None,
    )
    assert on_sweep(PERIOD, late.state, at(1000)) is None  # one lateness, one alert
    back = on_ping(PERIOD, late.state, PingKind.SUCCESS, at(1000))
    assert back.alert is AlertKind.BACK
    assert (back.state.status, back.state.down_since, back.state.due_at) == (
        HeartbeatStatus.UP,
        None,
        at(1090),
    )


def test_a_run_started_and_not_finished_within_its_grace_is_late() -> None:
    up = on_ping(PERIOD, State(HeartbeatStatus.NEW), PingKind.SUCCESS, at(0)).state
    started = on_ping(PERIOD, up, PingKind.START, at(10)).state
    assert (started.started_at, started.due_at) == (at(10), at(40))  # before period + grace (90)
    unfinished = on_sweep(PERIOD, started, at(40))
    assert unfinished is not None and unfinished.alert is AlertKind.UNFINISHED
    finished = on_ping(PERIOD, started, PingKind.SUCCESS, at(20)).state
    assert (finished.started_at, finished.due_at) == (None, at(110))


def test_a_fail_is_down_at_once_and_once() -> None:
    up = on_ping(PERIOD, State(HeartbeatStatus.NEW), PingKind.SUCCESS, at(0)).state
    failed = on_ping(PERIOD, up, PingKind.FAIL, at(5))
    assert failed.alert is AlertKind.FAILED and failed.state.status is HeartbeatStatus.DOWN
    again = on_ping(PERIOD, failed.state, PingKind.FAIL, at(6))
    assert again.alert is None and again.state.down_since == at(5)


def test_resuming_checks_from_the_resume() -> None:
    up = on_ping(PERIOD, State(HeartbeatStatus.NEW), PingKind.SUCCESS, at(0)).state
    paused = State(HeartbeatStatus.PAUSED, last_ping_at=at(0), last_ping_kind=PingKind.SUCCESS)
    assert on_ping(PERIOD, paused, PingKind.FAIL, at(5)).alert is None  # kept, not checked
    resumed = on_resume(PERIOD, paused, at(500))
    assert (resumed.status, resumed.expected_at, resumed.due_at) == (HeartbeatStatus.UP, at(560), at(590))
    assert on_resume(PERIOD, State(HeartbeatStatus.PAUSED), at(500)).status is HeartbeatStatus.NEW
    assert on_resume(PERIOD, up, at(500)) == up  # not paused: nothing to resume
