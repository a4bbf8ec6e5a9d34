"""What handlers and middlewares read from a request: its JSON body, its query parameters, its
Bearer credential."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from api.bodies import read_body
from api.state import API_BODY_LIMIT
from engine import limits
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
