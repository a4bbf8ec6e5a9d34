"""The one clock the engine's time rules read (DESIGN rule 3: no ``datetime.now()`` inside rules).

Workers hold one in their context; tests hand them a clock that runs ahead, so a minute's storm
window or a digest due in a minute is reached at once instead of waited for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM = SystemClock()


def real_time(clock: Clock, at: datetime) -> datetime:
    """The real instant at which ``clock`` reads ``at`` (the ``_defer_until`` of a wake-up job).

    A clock running at its own pace converts with its ``real_time`` method; any other is taken
    to run at the real pace, with its offset (a clock shifted ahead)."""
    convert = getattr(clock, "real_time", None)
    if callable(convert):
        result = convert(at)
        assert isinstance(result, datetime)
        return result
    return at - (clock.now() - datetime.now(UTC))
