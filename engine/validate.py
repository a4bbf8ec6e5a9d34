"""Checks of request values, whoever asks (the API, the CLI): each failure is a ValidationError
naming the field by its Python name (``target_channels.sms[1]``). The wire's names are api/'s
business: it parses a body into the engine's typed input and renames the fields of an error back
to what the client sent (api/inputs.py).

``UNSET`` is a field the request left out, as opposed to one given as null (``None``): a PATCH
keeps the value of a field it leaves out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Final

from engine.errors import MonodutyError, ValidationError


class Unset(Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def text(
    value: str | Unset | None,
    field: str,
    *,
    required: bool = False,
    min_length: int = 0,
    max_length: int = 1000,
    nullable: bool = False,
) -> str | None:
    """A trimmed string; left out (or null when nullable) gives None."""
    if value is UNSET or value is None:
        if required or (value is None and not nullable):
            raise ValidationError(f"{field} is required", field=field)
        return None
    value = value.strip()
    if len(value) < min_length:
        raise ValidationError(f"{field} must be at least {min_length} characters", field=field)
    if len(value) > max_length:
        raise ValidationError(f"{field} must be at most {max_length} characters", field=field)
    return value


def choice(value: object, field: str, choices: tuple[str, ...], *, default: str | None = None) -> str | None:
    """One of ``choices``; left out gives ``default``, and null is as wrong as any other value."""
    if value is UNSET:
        return default
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(f"{field} must be one of {', '.join(choices)}", field=field)
    return value


def path_id(raw: str, not_found: Callable[[], MonodutyError]) -> uuid.UUID:
    """The id in a URL path; a malformed one is simply not found, like an unknown one (ids are not
    a place for validation errors)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found() from None


def require_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError("the request body must be a JSON object", code="INVALID_BODY")
    return body


def only_known(body: Mapping[str, Any], known: Mapping[str, Any] | set[str]) -> None:
    """Refuse fields we do not know, so a typo is an error rather than silently ignored."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ValidationError(f"unknown field: {unknown[0]}", field=unknown[0])


def string(body: Mapping[str, Any], name: str, **limits: Any) -> str | None:
    """``text`` of a field of a whole JSON body, for the engine functions that still take one
    (a note on an incident) and whose field names are the same on the wire."""
    value = body.get(name, UNSET)
    if value is not UNSET and value is not None and not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    return text(value, name, **limits)
