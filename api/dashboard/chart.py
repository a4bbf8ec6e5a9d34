"""A bar chart drawn on the server as SVG: calls and incidents per day, for the reports page.

Only geometry is computed here (plain numbers for the template's ``<rect>``s); colours come from
the stylesheet, so the page needs no script and no inline style (its CSP allows neither). The
numbers are also in a table under the chart: the chart is for the eye, the table for everyone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 720
HEIGHT = 240
LEFT = 40  # the y axis' labels
BOTTOM = 28  # the x axis' labels
TOP = 10
MAX_LABELS = 8  # x-axis dates shown at most; the others are in the table


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str  # "2026-01-02: 5 calls", the bar's <title>


@dataclass(frozen=True)
class Tick:
    position: float
    text: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    series: dict[str, list[Bar]]  # series name -> one bar per day
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    baseline: float
    left: float
    right: float


def nice_top(largest: int) -> int:
    """A round top for the y axis at or above ``largest`` (1, 2, 5 times a power of ten)."""
    if largest <= 4:
        return max(largest, 1)
    power = 10 ** math.floor(math.log10(largest))
    for step in (1, 2, 5, 10):
        if step * power >= largest:
            return step * power
    return 10 * power


def bar_chart(days: Sequence[date], series: dict[str, tuple[Sequence[int], str]]) -> BarChart:
    """Grouped bars: for each day one bar per series (name -> (values, unit for the title))."""
    plot_width = WIDTH - LEFT - 8
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    top = nice_top(max([0, *(v for values, _ in series.values() for v in values)]))
    slot = plot_width / max(len(days), 1)
    gap = min(slot * 0.2, 12)
    bar_width = (slot - gap) / max(len(series), 1)
    bars: dict[str, list[Bar]] = {}
    for index, (name, (values, unit)) in enumerate(series.items()):
        bars[name] = []
        for i, (day, value) in enumerate(zip(days, values, strict=True)):
            height = plot_height * value / top
            x = LEFT + i * slot + gap / 2 + index * bar_width
            label = f"{day.isoformat()}: {value} {unit}"
            bars[name].append(
                Bar(
                    round(x, 2),
                    round(baseline - height, 2),
                    round(bar_width, 2),
                    round(height, 2),
                    value,
                    label,
                )
            )
    steps = top if top <= 4 else 4
    y_ticks = [
        Tick(round(baseline - plot_height * k / steps, 2), f"{top * k // steps}") for k in range(steps + 1)
    ]
    every = max(1, math.ceil(len(days) / MAX_LABELS))
    x_ticks = [
        Tick(round(LEFT + i * slot + slot / 2, 2), day.strftime("%b %d"))
        for i, day in enumerate(days)
        if i % every == 0
    ]
    return BarChart(WIDTH, HEIGHT, bars, y_ticks, x_ticks, baseline, LEFT, WIDTH - 8)


def duration(seconds: float | None) -> str:
    """MTTA / MTTR for people: "45 s", "12 min", "3 h 20 min"; "none yet" without a value."""
    if seconds is None:
        return "none yet"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
