"""Limits on what a request may ask of us: JSON nesting and sizes, page sizes.

The body size itself is capped by the HTTP layer (413); these catch what fits in the bytes but
is still unreasonable: deeply nested JSON (which also costs recursion in every walker), giant
strings hidden in fields we would otherwise store, and unbounded pages.
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


def check_json(value: Any) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH, strings over MAX_STRING, keys over MAX_KEY."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                raise ValidationError(f"{where} is longer than {MAX_STRING} characters", field=where)
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
                stack.append((child, depth + 1, key if where == "body" else f"{where}.{key}"))
        else:
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


def page(
    query: Mapping[str, str], *, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE
) -> tuple[int, int]:
    """``limit`` and ``offset`` from a query string: limit 1..maximum, offset >= 0."""

    def number(name: str, fallback: int, low: int, high: int) -> int:
        raw = query.get(name)
        if raw is None:
            return fallback
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValidationError(f"{name} must be a whole number from {low} to {high}", field=name)
        return int(raw)

    return number("limit", default, 1, maximum), number("offset", 0, 0, 10_000_000)
