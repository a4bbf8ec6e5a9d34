"""The one retry policy: which provider answers are worth retrying, and when to try again.

Channels only classify (``DeliveryError(permanent=...)``) using :func:`classify_status`; the
deliver job asks :func:`next_delay` how long to defer the next attempt. Nothing else retries.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Outcome = Literal["ok", "transient", "permanent"]

# 408 Request Timeout, 425 Too Early and 429 Too Many Requests say "not now", not "never".
TRANSIENT_4XX = frozenset({408, 425, 429})

# A provider asking for more than an hour is effectively down; an alert that late is useless,
# and a bogus header must not park a delivery for days.
MAX_RETRY_AFTER = 3600.0

_rng = random.Random()


def classify_status(status: int) -> Outcome:
    """Classify an HTTP status: 2xx ok; 408, 425, 429 and 5xx transient; anything else permanent."""
    if 200 <= status < 300:
        return "ok"
    if status in TRANSIENT_4XX or 500 <= status < 600:
        return "transient"
    return "permanent"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date).

    Past dates and negative numbers give 0; values beyond :data:`MAX_RETRY_AFTER` are capped;
    an absent or unreadable header gives None.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(
    attempt: int, *, base: float = 2.0, cap: float = 300.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``.

    Full jitter spreads retries of many deliveries that failed together (one provider outage)
    instead of sending them back in synchronised waves.
    """
    exponent = min(max(attempt, 1) - 1, 64)  # bounded so a huge attempt number cannot overflow
    ceiling = min(cap, base * 2.0**exponent)
    return (rng or _rng).uniform(0.0, ceiling)


def next_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base: float = 2.0,
    cap: float = 300.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after attempt ``attempt`` failed transiently.

    A provider's ``Retry-After`` is honoured: we wait at least that long (up to
    :data:`MAX_RETRY_AFTER`), or a small jittered floor if it asked for (almost) nothing.
    Otherwise the exponential backoff applies.
    """
    if retry_after is None:
        return backoff_delay(attempt, base=base, cap=cap, rng=rng)
    floor = backoff_delay(1, base=base, cap=cap, rng=rng)
    return min(max(retry_after, floor), MAX_RETRY_AFTER)
