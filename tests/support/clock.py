"""Clocks for workers: ``ShiftedClock`` runs ahead of the real one (a storm's minute is over at once),
``ScaledClock`` runs faster than it (an escalation's minutes in seconds), ``ManualClock`` stands still
until the test moves it (a heartbeat's outage of an hour, to the second)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class ShiftedClock:
    """The real time plus ``seconds`` (engine.clock.Clock)."""

    seconds: float

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.seconds)


class ScaledClock:
    """Time that runs ``rate`` times as fast as the real one from the moment it is made (an
    escalation's minutes in seconds). ``real_time`` says when a reading comes in real time, for
    the deferred wake-up jobs (engine.clock.real_time)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.origin = datetime.now(UTC)

    def now(self) -> datetime:
        return self.origin + (datetime.now(UTC) - self.origin) * self.rate

    def real_time(self, at: datetime) -> datetime:
        return self.origin + (at - self.origin) / self.rate


class ManualClock:
    """Time that stands still until the test moves it (``advance``): the API and the workers given
    one clock see the very instants the test chose, so an hour's outage is one line."""

    def __init__(self, start: datetime | None = None) -> None:
        self.at = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at
