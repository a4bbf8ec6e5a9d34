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
