"""JSON answers in the seed's shapes: ``{"success": true, ...}`` and the error format."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web


def timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and Z, as the seed's error example shows."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(data: Any) -> str:
    return json.dumps(data, default=_default, separators=(",", ":"))


def ok(http_status: int = 200, headers: dict[str, str] | None = None, **data: Any) -> web.Response:
    return web.json_response({"success": True, **data}, status=http_status, headers=headers, dumps=dumps)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"success": False, "error": message, "code": code, "timestamp": timestamp()}
    return web.json_response(body, status=status, headers=headers, dumps=dumps)
