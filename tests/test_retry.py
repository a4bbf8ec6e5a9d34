"""The one retry policy: what is worth retrying, and when."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from engine.retry import MAX_RETRY_AFTER, backoff_delay, classify_status, next_delay, parse_retry_after

NOW = datetime(2024, 1, 15, 10, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (201, "ok"),
        (204, "ok"),
        (299, "ok"),
        (408, "transient"),
        (425, "transient"),
        (429, "transient"),
        (500, "transient"),
        (502, "transient"),
        (503, "transient"),
        (504, "transient"),
        (599, "transient"),
        (301, "permanent"),  # a provider API redirecting means a wrong base URL
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (413, "permanent"),
        (422, "permanent"),
        (100, "permanent"),
        (600, "permanent"),
        (0, "permanent"),
    ],
)
def test_classify_status(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # nonsense, but "now" is the only sane reading
        ("99999", MAX_RETRY_AFTER),
        ("Mon, 15 Jan 2024 10:31:00 GMT", 60.0),
        ("Monday, 15-Jan-24 10:30:30 GMT", 30.0),  # obsolete RFC 850 form
        ("Mon, 15 Jan 2024 10:00:00 GMT", 0.0),  # in the past
        ("Tue, 16 Jan 2024 10:30:00 GMT", MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("soon", None),
        ("1e", None),
        ("nan", None),
        ("inf", None),
        ("Mon, 99 Foo 2024", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_backoff_grows_and_stays_within_bounds() -> None:
    rng = random.Random(1234)
    for attempt in range(1, 12):
        ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter: the draws cover the range, not just its top.
        assert max(delays) > 0.8 * ceiling
        assert min(delays) < 0.2 * ceiling


def test_backoff_mean_doubles_until_the_cap() -> None:
    rng = random.Random(42)

    def mean(attempt: int) -> float:
        return sum(backoff_delay(attempt, base=1.0, cap=60.0, rng=rng) for _ in range(2000)) / 2000

    means = {a: mean(a) for a in range(1, 10)}
    for attempt in range(1, 6):  # ceilings 1, 2, 4, 8, 16, 32: each mean about twice the last
        assert 1.6 < means[attempt + 1] / means[attempt] < 2.4
    # From attempt 7 on the ceiling is the cap: the mean stops growing, at about half the cap.
    assert 25.0 < means[8] < 35.0
    assert 25.0 < means[9] < 35.0


@pytest.mark.parametrize("attempt", [0, -3, 10_000])
def test_backoff_survives_odd_attempt_numbers(attempt: int) -> None:
    delay = backoff_delay(attempt, rng=random.Random(7))
    assert 0.0 <= delay <= 300.0


def test_backoff_is_reproducible_with_a_seed() -> None:
    first = [backoff_delay(a, rng=random.Random(9)) for a in range(1, 6)]
    second = [backoff_delay(a, rng=random.Random(9)) for a in range(1, 6)]
    assert first == second


def test_next_delay_without_retry_after_is_the_backoff() -> None:
    assert next_delay(3, None, rng=random.Random(5)) == backoff_delay(3, rng=random.Random(5))


def test_next_delay_honours_retry_after() -> None:
    rng = random.Random(3)
    # Never sooner than the provider asked, whatever the attempt number.
    for attempt in range(1, 8):
        assert next_delay(attempt, 30.0, rng=rng) == 30.0
    assert next_delay(1, 1e9, rng=rng) == MAX_RETRY_AFTER


def test_next_delay_keeps_a_jittered_floor_when_retry_after_is_zero() -> None:
    rng = random.Random(11)
    delays = [next_delay(1, 0.0, base=2.0, rng=rng) for _ in range(100)]
    assert all(0.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 90  # spread out, not a synchronised wave
