"""What handlers and middlewares read from a request: its JSON body, its Bearer credential."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from api.bodies import read_body
from api.state import API_BODY_LIMIT
from engine import limits
from engine.errors import ValidationError


async def json_body(request: web.Request) -> Any:
    """The request's JSON within engine.limits (depth, string sizes), or a 400 that says what is wrong."""
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


def bearer(request: web.Request) -> str | None:
    """The credential of ``Authorization: Bearer <credential>`` (any case of Bearer), else None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
