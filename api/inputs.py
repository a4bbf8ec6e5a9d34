"""What handlers and middlewares read from a request: its JSON body, its query parameters, its
Bearer credential; and the one translation between the wire's field names and the engine's.

A resource's request bodies are described by one mapping, wire name -> the engine's Python name
(``{"targetChannels": "target_channels", ...}``). ``fields`` turns a body into keyword arguments
of the engine's typed input, and ``wire_names`` renames the field of an error the engine raises
back to the wire name, so a client reads ``targetChannels.sms[1]`` where the engine says
``target_channels.sms[1]``.

What is checked where: the body being an object, unknown fields and the JSON type of plain text
and boolean fields are the wire's shape, checked here under the wire's names. Everything else is
a domain rule, checked by the engine. That includes the JSON type of structured or enumerated
values (targets, notification types, enums, secrets, addresses): one message there covers a wrong
type and a wrong value alike ("must be a non-empty array of EMAIL, SMS, ..."), and the same
checks serve the CLI and values read back from the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from api.bodies import read_body
from api.state import API_BODY_LIMIT
from engine import limits, validate
from engine.errors import MonodutyError, ValidationError

# The media types an HTML form may send to another site without a CORS preflight. JSON declared
# as one of them is refused rather than parsed: no cross-site form can then make a body the API
# takes (a defence beside the CSRF token), and a client that forgot its Content-Type (curl -d
# sends form-urlencoded) hears so instead of being half-understood. Anything else, a missing
# Content-Type included, is read as JSON.
FORM_MEDIA_TYPES = ("text/", "application/x-www-form-urlencoded", "multipart/")


async def json_body(request: web.Request) -> Any:
    """The request's JSON within engine.limits (depth, string sizes), or a 400 that says what is wrong
    (a 415 for a form or text Content-Type)."""
    if request.content_type.startswith(FORM_MEDIA_TYPES):
        raise MonodutyError(
            f"request body must be JSON (Content-Type: application/json), not {request.content_type}",
            code="UNSUPPORTED_MEDIA_TYPE",
            status=415,
        )
    raw = await read_body(request, request.app[API_BODY_LIMIT])
    try:
        body = json.loads(raw.decode(request.charset or "utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"request body is not valid JSON ({exc})", code="INVALID_JSON") from None
    except LookupError:  # Content-Type named a charset Python does not know
        raise ValidationError(
            "request body's charset is unknown; send UTF-8 JSON", code="INVALID_JSON"
        ) from None
    except RecursionError:
        raise ValidationError("the JSON body is nested too deeply", code="TOO_DEEP") from None
    limits.check_json(body)
    return body


def query(request: web.Request, *names: str) -> dict[str, str]:
    """The query parameters ``names`` that are present, or a 400 naming one given more than once
    (``?limit=1&limit=2`` has no one meaning). Parameters a route does not read are ignored."""
    params: MultiMapping[str] = request.query
    for name in names:
        if len(params.getall(name, ())) > 1:
            raise ValidationError(f"{name} may be given only once", field=name)
    return {name: params[name] for name in names if name in params}


def bearer(request: web.Request) -> str | None:
    """The credential of ``Authorization: Bearer <credential>`` (any case of Bearer), else None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def fields(
    body: object,
    names: Mapping[str, str],
    *,
    text: Collection[str] = (),
    flags: Collection[str] = (),
) -> dict[str, Any]:
    """The body's fields as keyword arguments of the engine's input (fields left out are left out:
    the input's default says "not given"). ``names`` maps wire name -> Python name; ``text`` and
    ``flags`` are the wire names whose value must be a string (or null) and true or false."""
    body = validate.require_object(body)
    validate.only_known(body, names)
    for name in text:
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise ValidationError(f"{name} must be a string", field=name)
    for name in flags:
        if name in body and not isinstance(body[name], bool):
            raise ValidationError(f"{name} must be true or false", field=name)
    return {names[name]: value for name, value in body.items()}


_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@contextmanager
def wire_names(names: Mapping[str, str]) -> Iterator[None]:
    """Rename the field of a ValidationError raised inside from the engine's name to the wire's
    (``names``: wire name -> Python name): in ``field``, and at the start of the message, where the
    engine names the field it is about."""
    to_wire = {python: wire for wire, python in names.items() if python != wire}
    try:
        yield
    except ValidationError as exc:
        head = _HEAD.match(exc.field or "")
        if head is not None and head.group() in to_wire:
            python, wire = head.group(), to_wire[head.group()]
            exc.field = wire + (exc.field or "")[len(python) :]
            if re.match(rf"{re.escape(python)}\b", exc.message):
                exc.message = wire + exc.message[len(python) :]
                exc.args = (exc.message,)
        raise


_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
_SNAKE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


@contextmanager
def wire_paths(names: Mapping[str, str]) -> Iterator[None]:
    """``wire_names`` for nested bodies: rename every segment of an error's field path
    (``rotations[0].active_hours.start`` -> ``rotations[0].activeHours.start``), ``names`` holding
    the wire -> Python names of every level."""
    to_wire = {python: wire for wire, python in names.items() if python != wire}

    def rename(segment: str) -> str:
        match = _SEGMENT.fullmatch(segment)
        if match is None or match.group(1) not in to_wire:
            return segment
        return to_wire[match.group(1)] + match.group(2)

    try:
        yield
    except ValidationError as exc:
        if exc.field:
            exc.field = ".".join(rename(segment) for segment in exc.field.split("."))
        # The message names fields by their paths too ("... must differ from ....active_hours.start").
        exc.message = _SNAKE.sub(lambda m: to_wire.get(m.group(), m.group()), exc.message)
        exc.args = (exc.message,)
        raise
