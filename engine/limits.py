"""Limits on what a request may ask of us: JSON nesting and sizes, page sizes.

The body size itself is capped by the HTTP layer (413); these catch what fits in the bytes but
is still unreasonable: deeply nested JSON (which also costs recursion in every walker), giant
strings hidden in fields we would otherwise store, text PostgreSQL cannot store (a NUL character,
an unpaired surrogate: both arrive as valid JSON escapes), and unbounded pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ValidationError

MAX_DEPTH = 16
MAX_STRING = 10_000
MAX_KEY = 100
MAX_ITEMS = 1_000
DEFAULT_PAGE = 50
MAX_PAGE = 100


def _storable(text: str) -> bool:
    """PostgreSQL text and jsonb refuse NUL; asyncpg cannot encode a lone surrogate to UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_json(value: Any) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH, strings over MAX_STRING, keys over MAX_KEY, and
    strings or keys that cannot be stored (NUL, unpaired surrogates)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                raise ValidationError(f"{where} is longer than {MAX_STRING} characters", field=where)
            if not _storable(item):
                raise ValidationError(
                    f"{where} holds a NUL character or an unpaired surrogate",
                    field=where,
                    code="INVALID_TEXT",
                )
            continue
        if not isinstance(item, Mapping | list):
            continue
        if depth > MAX_DEPTH:
            raise ValidationError(f"the JSON body is nested deeper than {MAX_DEPTH} levels", code="TOO_DEEP")
        if len(item) > MAX_ITEMS:
            raise ValidationError(f"{where} has more than {MAX_ITEMS} items", field=where)
        if isinstance(item, Mapping):
            for key, child in item.items():
                if len(key) > MAX_KEY:
                    raise ValidationError(f"a field name in {where} is longer than {MAX_KEY} characters")
                if not _storable(key):
                    raise ValidationError(
                        f"a field name in {where} holds a NUL character or an unpaired surrogate",
                        code="INVALID_TEXT",
                    )
                stack.append((child, depth + 1, key if where == "body" else f"{where}.{key}"))
        else:
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


def page(
    query: Mapping[str, str], *, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE
) -> tuple[int, int]:
    """``limit`` and ``offset`` from a query string: limit 1..maximum, offset >= 0."""

    def number(name: str, fallback: int, low: int, high: int) -> int:
        raw = query.get(name)
        return fallback if raw is None else whole_number(raw, name, low, high)

    return number("limit", default, 1, maximum), number("offset", 0, 0, 10_000_000)


def digits(raw: str) -> int | None:
    """The value of a string of ASCII digits, or None. ``str.isdigit`` alone lets through "²"
    (which int() refuses) and thousands of digits (past int()'s limit): both would be a 500."""
    if not raw or len(raw) > 18 or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """A query parameter that must be a whole number in ``low..high``, or a 400 naming it."""
    value = digits(raw)
    if value is None or not low <= value <= high:
        raise ValidationError(f"{name} must be a whole number from {low} to {high}", field=name)
    return value
