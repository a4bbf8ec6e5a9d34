"""The perimeter: HTTPS enforcement with trusted proxies, HSTS, and the per-caller API rate limit.

Order in the app: request id → timing and access log → errors → ``https_middleware`` →
``ratelimit_middleware`` → auth. So plain HTTP is refused before it is counted, and an over-limit
caller is refused before its key is looked up or any handler runs.

A request counts as HTTPS when it arrived over TLS, or when it comes from an address in
``MONODUTY_TRUSTED_PROXIES`` whose ``X-Forwarded-Proto`` says https. From such a proxy the
last ``X-Forwarded-For`` entry (the address the proxy saw) becomes ``request.remote``; from
anyone else both headers are ignored.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from api.dashboard.guard import is_dashboard
from api.inputs import bearer
from api.state import REDIS, SETTINGS
from engine import ratelimit
from engine.auth.sessions import COOKIE_NAME
from engine.errors import MonodutyError

log = logging.getLogger("monoduty.security")

HTTPS = web.RequestKey("https", bool)
PROXIES = web.AppKey("trusted_proxies", tuple)
HSTS = "max-age=31536000"
# Probes and scrapers talk plain HTTP inside a cluster; they carry no secret.
EXEMPT = frozenset({"/healthz", "/metrics"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(remote: str | None, networks: tuple[Network, ...]) -> bool:
    if not remote or not networks:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _last(header: str | None) -> str:
    return header.rsplit(",", 1)[-1].strip() if header else ""


@web.middleware
async def https_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse plain HTTP where required (403 HTTPS_REQUIRED); see the module docstring."""
    settings = request.app[SETTINGS]
    secure = request.secure
    changes: dict[str, Any] = {}
    if _trusted(request.remote, request.app[PROXIES]):
        if not secure and _last(request.headers.get("X-Forwarded-Proto")).lower() == "https":
            secure = True
            changes["scheme"] = "https"
        forwarded_for = _last(request.headers.get("X-Forwarded-For"))
        if forwarded_for:
            changes["remote"] = forwarded_for
    request[HTTPS] = secure  # set before cloning: the response signal sees the original request
    path = request.path
    # The dashboard's pages carry the session cookie, as /api does; inbound alerts may differ.
    api_like = path.startswith("/api/") or is_dashboard(request)
    required = settings.require_https if api_like else settings.https_inbound
    if required and not secure and path not in EXEMPT:
        raise MonodutyError(
            "HTTPS is required: send this request to the https:// address", code="HTTPS_REQUIRED", status=403
        )
    return await handler(request.clone(**changes) if changes else request)


async def add_hsts(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer given over HTTPS tells the browser to stay on HTTPS."""
    if request.get(HTTPS):
        response.headers["Strict-Transport-Security"] = HSTS


def _caller(request: web.Request) -> str:
    """Whom an /api request is counted against: its API key, else its session, else its address."""
    key = bearer(request)
    if key is not None:
        return "key:" + key
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        return "session:" + cookie
    return "address:" + (request.remote or "unknown")


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """MONODUTY_RATE_LIMIT_API per caller on /api/*, shared by every API process through Redis."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    limit = request.app[SETTINGS].rate_limit_api
    try:
        verdict = await ratelimit.hit(
            request.app[REDIS], ratelimit.bucket("api", _caller(request)), limit, "api"
        )
    except (RedisError, OSError) as exc:
        # Fail open: with Redis away, /api/status must still say so, and reads of Postgres still work.
        log.warning("rate limit not checked, Redis unreachable: %s", type(exc).__name__)
        return await handler(request)
    if not verdict.allowed:
        if verdict.first_refusal:
            log.warning("API rate limit reached", extra={"route": request.path, "outcome": "limited"})
        message = f"over the limit of {limit.count} requests per {limit.seconds} seconds"
        raise ratelimit.RateLimited(verdict, message)
    response = await handler(request)
    if not response.prepared:
        response.headers.update(verdict.headers())
    return response


def setup(app: web.Application) -> None:
    """What the perimeter needs on the app besides its middlewares."""
    app[PROXIES] = trusted_networks(app[SETTINGS].trusted_proxies)
    app.on_response_prepare.append(add_hsts)
