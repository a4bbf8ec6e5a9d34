"""Throttles: how often one contact may be messaged, so repeat-until-acknowledged cannot become a
flood. A contact is a person's contact method (channel and target), or a policy's channel target.

- A **gap** between any two messages (MONODUTY_PAGE_BUNDLE_SECONDS, 60 s by default).
- Per channel, **sliding windows** (GoAlert's figures, which its users have lived with): calls 3
  per 15 minutes, 7 per hour, 15 per 3 hours; SMS 5 per 15 minutes, 11 per hour, 21 per 3 hours
  (MONODUTY_THROTTLE_CALL, MONODUTY_THROTTLE_SMS, e.g. ``3/15m,7/1h,15/3h``).

A page due while its contact is throttled waits until the throttle allows, and whatever else comes
due for that contact meanwhile goes with it, as one bundle (engine.oncall.paging). ``held_until``
answers when, from the times of the contact's last messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.settings import Settings


@dataclass(frozen=True)
class Limit:
    """At most ``count`` messages within any ``seconds``."""

    count: int
    seconds: float


@dataclass(frozen=True)
class Throttles:
    gap_seconds: float
    windows: Mapping[str, tuple[Limit, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> Throttles:
        windows = {
            "CALL": tuple(Limit(c, s) for c, s in settings.throttle_call),
            "SMS": tuple(Limit(c, s) for c, s in settings.throttle_sms),
        }
        return cls(settings.page_bundle_seconds, windows)

    def limits(self, channel: str) -> tuple[Limit, ...]:
        gap = (Limit(1, self.gap_seconds),) if self.gap_seconds > 0 else ()
        return gap + self.windows.get(channel, ())

    def lookback(self, channel: str) -> tuple[float, int]:
        """How far back, and how many of the last messages, ``held_until`` needs to see."""
        limits = self.limits(channel)
        return max((lim.seconds for lim in limits), default=0.0), max(
            (lim.count for lim in limits), default=0
        )


DEFAULT = Throttles.of(Settings())
NONE = Throttles(0.0)  # tests of bundling alone, and an operator who turns throttling off


def held_until(limits: Sequence[Limit], sent: Sequence[datetime], now: datetime) -> datetime | None:
    """When the next message may go, if not now. ``sent``: when the contact's last messages went,
    newest first (at least as many as the largest count, as far back as the longest window)."""
    held: datetime | None = None
    for limit in limits:
        inside = [at for at in sent if at > now - timedelta(seconds=limit.seconds)]
        if len(inside) >= limit.count:
            allowed = inside[limit.count - 1] + timedelta(seconds=limit.seconds)
            held = allowed if held is None else max(held, allowed)
    return held
