"""Middlewares every request passes: request id, errors in the seed's format."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from api.responses import error
from api.state import API_BODY_LIMIT, REQUEST_ID
from engine.errors import STORAGE_DOWN, MonodutyError

log = logging.getLogger("monoduty.api")


# Seconds a client is asked to wait when PostgreSQL or Redis is unreachable.
STORAGE_RETRY_AFTER = 5

# aiohttp's own HTTP errors, named the way our clients read codes.
_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def route_name(request: web.Request) -> str:
    """The matched route's pattern (``/{token}``), never the raw path: paths can hold secrets."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag each request with an id (a caller's X-Request-Id if sane) that follows it to the worker."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if 8 <= len(given) <= 64 and given.replace("-", "").isalnum() else secrets.token_hex(8)
    request[REQUEST_ID] = rid
    response = await handler(request)
    response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the seed's error JSON; no stack trace ever reaches a client."""
    try:
        return await handler(request)
    except MonodutyError as exc:
        return error(exc.status, exc.code, exc.message, headers=getattr(exc, "headers", None))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[API_BODY_LIMIT]
        return error(413, "PAYLOAD_TOO_LARGE", f"request body is over the limit of {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error(exc.status, code, message, headers=headers)
    except STORAGE_DOWN as exc:
        # PostgreSQL or Redis away for a moment: say so, so that a sender (Alertmanager, Grafana)
        # retries, rather than answering 500 as if the request itself were at fault.
        log.warning(
            "storage unreachable on %s %s: %s", request.method, route_name(request), type(exc).__name__
        )
        message = "temporarily unavailable: a storage service is unreachable; retry shortly"
        return error(503, "SERVICE_UNAVAILABLE", message, headers={"Retry-After": str(STORAGE_RETRY_AFTER)})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, route_name(request))
        return error(500, "INTERNAL_ERROR", "internal server error")
