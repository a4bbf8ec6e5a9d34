"""Who is on call: a schedule's layers and overrides, at one instant or as shifts over a range.

At any instant at most one user is on call (as in PagerDuty's final schedule): the participant of
the top-most rotation that covers the instant (later rotations sit above earlier ones), unless an
override applies. Overrides sit above every rotation; an override with ``replaces`` applies only
where the rotations put that user on call (it is matched against the rotations, not against other
overrides, so the two halves of a swap never undo each other); among overrides that apply, the
later one wins. Time no rotation covers and no override fills has nobody on call.

DST rules (nonexistent and repeated wall times, elapsed hours) are in ``localtime`` and
``rotations``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.oncall import rotations
from engine.oncall.model import Override, Schedule, Shift, Source
from engine.oncall.validation import aware, validate_schedule, window

MAX_RANGE = timedelta(days=90)


def on_call(schedule: Schedule, at: datetime) -> list[str]:
    """The users on call at ``at`` (an aware instant): one, or none where nothing covers it."""
    tz = validate_schedule(schedule)
    aware(at, "at")
    user, _ = _user_at(schedule, tz, at.astimezone(UTC))
    return [] if user is None else [user]


def shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """The final shifts within [start, end) (aware; at most 90 days), clipped to it, in order.

    Adjacent stretches of one user are one shift, whichever layers or overrides they come from.
    """
    tz = validate_schedule(schedule)
    window(start, end, longest=MAX_RANGE, names=("start", "end"))
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    layers = [rotations.segments(rotation, tz, start, end) for rotation in schedule.rotations]
    pieces = _apply_overrides(_layered(layers, start, end), schedule.overrides)
    return _merged(pieces)


@dataclass(frozen=True)
class _Piece:
    start: datetime
    end: datetime
    user: str | None  # None: nobody on call
    source: Source | None
    base: str | None  # whom the rotations put here (what `replaces` is matched against)


def _user_at(schedule: Schedule, tz: ZoneInfo, at: datetime) -> tuple[str | None, Source | None]:
    base: str | None = None
    source: Source | None = None
    for index in reversed(range(len(schedule.rotations))):
        base = rotations.user_at(schedule.rotations[index], tz, at)
        if base is not None:
            source = Source("rotation", index)
            break
    for index in reversed(range(len(schedule.overrides))):
        override = schedule.overrides[index]
        if override.start <= at < override.end and override.replaces in (None, base):
            return override.user, Source("override", index)
    return base, source


def _layered(layers: list[list[rotations.Segment]], start: datetime, end: datetime) -> list[_Piece]:
    """[start, end) cut into pieces, each held by the top-most layer covering it (or nobody).

    Paints from the top layer down, each layer filling only the gaps the ones above it left.
    """
    pieces: list[_Piece] = []
    gaps = [(start, end)]
    for index in reversed(range(len(layers))):
        segments = layers[index]
        ends = [segment[2] for segment in segments]
        remaining: list[tuple[datetime, datetime]] = []
        for gap_start, gap_end in gaps:
            cursor = gap_start
            i = bisect.bisect_right(ends, gap_start)  # the first segment ending after the gap starts
            while i < len(segments) and segments[i][1] < gap_end:
                user, begin, finish = segments[i]
                begin, finish = max(begin, gap_start), min(finish, gap_end)
                if begin > cursor:
                    remaining.append((cursor, begin))
                pieces.append(_Piece(begin, finish, user, Source("rotation", index), user))
                cursor, i = finish, i + 1
            if cursor < gap_end:
                remaining.append((cursor, gap_end))
        gaps = remaining
    pieces.extend(_Piece(begin, finish, None, None, None) for begin, finish in gaps)
    pieces.sort(key=lambda piece: piece.start)
    return pieces


def _apply_overrides(pieces: list[_Piece], overrides: tuple[Override, ...]) -> list[_Piece]:
    if not pieces:
        return pieces
    start, end = pieces[0].start, pieces[-1].end
    relevant = [
        (index, override.start.astimezone(UTC), override.end.astimezone(UTC), override)
        for index, override in enumerate(overrides)
        if override.start < end and override.end > start
    ]
    if not relevant:
        return pieces
    cuts = sorted({t for _, s, e, _ in relevant for t in (s, e) if start < t < end})
    out: list[_Piece] = []
    for piece in _split(pieces, cuts):
        for index, begin, finish, override in reversed(relevant):
            if begin <= piece.start and piece.end <= finish and override.replaces in (None, piece.base):
                piece = _Piece(piece.start, piece.end, override.user, Source("override", index), piece.base)
                break
        out.append(piece)
    return out


def _split(pieces: list[_Piece], cuts: list[datetime]) -> list[_Piece]:
    """The pieces cut at every instant of ``cuts`` (sorted) that falls inside one."""
    out: list[_Piece] = []
    for piece in pieces:
        begin = piece.start
        i = bisect.bisect_right(cuts, begin)
        while i < len(cuts) and cuts[i] < piece.end:
            out.append(_Piece(begin, cuts[i], piece.user, piece.source, piece.base))
            begin, i = cuts[i], i + 1
        out.append(_Piece(begin, piece.end, piece.user, piece.source, piece.base))
    return out


def _merged(pieces: list[_Piece]) -> list[Shift]:
    """Shifts of the pieces that have someone on call, joining adjacent ones of the same user."""
    out: list[Shift] = []
    for piece in pieces:
        if piece.user is None or piece.source is None:
            continue
        last = out[-1] if out else None
        if last is not None and last.user == piece.user and last.end == piece.start:
            sources = last.sources if piece.source in last.sources else (*last.sources, piece.source)
            out[-1] = Shift(last.user, last.start, piece.end, sources)
        else:
            out.append(Shift(piece.user, piece.start, piece.end, (piece.source,)))
    return out
