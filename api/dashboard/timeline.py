"""A schedule's week (or two) as lanes of bars: each rotation's own shifts (its layer), the
overrides, and the final shifts (who is paged), laid out in the viewer's time zone.

Positions are percentages of the range, drawn by the template as SVG (attributes, not inline
styles: the pages' CSP allows no inline style). The shifts themselves come from the engine
(engine.oncall.answers.shifts, rotations.segments, overrides.list_overrides); this only places them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api.dashboard.zones import day_and_time
from engine.oncall import answers, rotations
from engine.oncall.crud import ScheduleRecord
from engine.oncall.localtime import to_instant, to_wall


@dataclass(frozen=True)
class Range:
    first_day: date
    days: int
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return to_instant(datetime.combine(self.first_day, time()), self.tz)

    @property
    def end(self) -> datetime:
        return to_instant(datetime.combine(self.first_day + timedelta(days=self.days), time()), self.tz)

    def x(self, moment: datetime) -> float:
        """Where ``moment`` falls, in percent of the range (clamped)."""
        span = (self.end - self.start).total_seconds()
        share = (moment - self.start).total_seconds() / span
        return round(min(max(share, 0.0), 1.0) * 100, 4)


def week_of(today: date, days: int, tz: ZoneInfo) -> Range:
    return Range(today, days, tz)


def person_name(person: answers.Person | None) -> str:
    if person is None:
        return "someone"
    return person.name or person.email or "a removed user"


def _bar(rng: Range, start: datetime, end: datetime, text: str, kind: str, shade: int) -> dict[str, Any]:
    left, right = rng.x(start), rng.x(end)
    return {
        "x": f"{left}%",
        "w": f"{max(right - left, 0.2)}%",
        "text": text,
        "kind": kind,
        "shade": shade % 2,
        "title": f"{text}: {day_and_time(start, rng.tz)} to {day_and_time(end, rng.tz)}",
    }


def day_marks(rng: Range, now: datetime) -> list[dict[str, Any]]:
    marks = []
    for i in range(rng.days):
        day = rng.first_day + timedelta(days=i)
        at = to_instant(datetime.combine(day, time()), rng.tz)
        marks.append(
            {
                "x": f"{rng.x(at)}%",
                "label": f"{day:%a} {day.day}",
                "weekend": day.weekday() >= 5,
                "today": to_wall(now, rng.tz).date() == day,
            }
        )
    return marks


def lanes(
    rng: Range,
    record: ScheduleRecord,
    final: Sequence[answers.ShiftAnswer],
    overrides: Iterable[Mapping[str, Any]],
    people: Mapping[uuid.UUID, answers.Person],
) -> list[dict[str, Any]]:
    """The lanes, top to bottom: each layer (the last one wins, so it is drawn first), the
    overrides, then the final shifts."""
    zone = ZoneInfo(record.time_zone)
    out: list[dict[str, Any]] = []
    count = len(record.rotations)
    for index in reversed(range(count)):
        item = record.rotations[index]
        order = {user: i for i, user in enumerate(item.rotation.participants)}
        bars = [
            _bar(rng, start, end, person_name(people.get(uuid.UUID(user))), "rotation", order[user])
            for user, start, end in rotations.segments(item.rotation, zone, rng.start, rng.end)
        ]
        out.append({"label": layer_names(record)[item.id], "kind": "rotation", "bars": bars})
    override_bars = [
        _bar(
            rng,
            max(o["start_at"], rng.start),
            min(o["end_at"], rng.end),
            person_name(people.get(o["user_id"])),
            "override",
            0,
        )
        for o in overrides
    ]
    out.append({"label": "Overrides", "kind": "override", "bars": override_bars})
    final_bars = []
    for i, shift in enumerate(final):
        is_override = any(s.kind == "override" for s in shift.sources)
        # The name first: a short bar still shows whose it is; the stripes say "override".
        text = person_name(shift.person) + (" (override)" if is_override else "")
        final_bars.append(_bar(rng, shift.start, shift.end, text, "override" if is_override else "final", i))
    out.append({"label": "Final: who is paged", "kind": "final", "bars": final_bars})
    return out


def layer_names(record: ScheduleRecord) -> dict[uuid.UUID, str]:
    """Each rotation's id -> "Layer 2: Business hours" (as the lanes are labelled)."""
    return {
        item.id: f"Layer {index + 1}: {item.name or f'Rotation {index + 1}'}"
        for index, item in enumerate(record.rotations)
    }


def shift_rows(
    rng: Range, record: ScheduleRecord, final: Sequence[answers.ShiftAnswer]
) -> list[dict[str, str]]:
    """The final shifts as text: the timeline's readable form (and the phone's)."""
    names = layer_names(record)
    rows = []
    for shift in final:
        sources = [
            "Override" if source.kind == "override" else names.get(source.id, "a layer")
            for source in shift.sources
        ]
        rows.append(
            {
                "who": person_name(shift.person),
                "start": day_and_time(shift.start, rng.tz),
                "end": day_and_time(shift.end, rng.tz),
                "source": ", ".join(sources),
                "override": "yes" if any(s.kind == "override" for s in shift.sources) else "",
            }
        )
    return rows
