"""Field checks for request bodies: each failure is a ValidationError naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ValidationError


def require_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError("the request body must be a JSON object", code="INVALID_BODY")
    return body


def string(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    min_length: int = 0,
    max_length: int = 1000,
    nullable: bool = False,
) -> str | None:
    """A trimmed string field; absent (or null when nullable) gives None."""
    value = body.get(name)
    if value is None:
        if required or (name in body and not nullable):
            raise ValidationError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    value = value.strip()
    if len(value) < min_length:
        raise ValidationError(f"{name} must be at least {min_length} characters", field=name)
    if len(value) > max_length:
        raise ValidationError(f"{name} must be at most {max_length} characters", field=name)
    return value


def one_of(
    body: Mapping[str, Any], name: str, choices: tuple[str, ...], *, default: str | None = None
) -> str | None:
    value = body.get(name)
    if value is None:
        if name in body:  # an explicit null is a wrong type, not "left out"
            raise ValidationError(f"{name} must be one of {', '.join(choices)}", field=name)
        return default
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(f"{name} must be one of {', '.join(choices)}", field=name)
    return value


def only_known(body: Mapping[str, Any], known: set[str]) -> None:
    """Refuse fields we do not know, so a typo is an error rather than silently ignored."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValidationError(f"unknown field: {unknown[0]}", field=unknown[0])
