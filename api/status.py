"""System status routes (/api/status, /api/response-time, /api/uptime, /readyz).

Public and secret-free. ``setup`` adds the routes and a background task that says, every
``API_BEAT_SECONDS``, that this API process is alive (for /api/uptime's start time), so that every
process answers alike. Request times are recorded and flushed by api/observability.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api.responses import ok
from api.state import POOL, REDIS, RESPONSE_TIMES, SETTINGS
from engine.errors import Unavailable
from engine.observability import periodic, presence, response_times, status, uptime

log = logging.getLogger("monoduty.api")

STARTED_AT = web.AppKey("started_at", datetime)
FLUSH_SECONDS = 1.0
API_BEAT_SECONDS = 20.0

routes = web.RouteTableDef()


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: PostgreSQL and Redis both answer. 503 names what does not."""
    timeout = request.app[SETTINGS].status_timeout
    (db_ok, _), (redis_ok, _) = await asyncio.gather(
        status.database_reachable(request.app[POOL], timeout),
        status.redis_reachable(request.app[REDIS], timeout),
    )
    down = [name for name, up in (("database", db_ok), ("redis", redis_ok)) if not up]
    if down:
        raise Unavailable(f"not ready: {' and '.join(down)} unreachable", code="NOT_READY")
    return ok(status="ready")


@routes.get("/api/status")
async def get_status(request: web.Request) -> web.Response:
    return ok(**await status.check(request.app[POOL], request.app[REDIS], request.app[SETTINGS]))


@routes.get("/api/response-time")
async def get_response_time(request: web.Request) -> web.Response:
    return ok(**await response_time_numbers(request.app))


async def response_time_numbers(app: web.Application) -> dict[str, Any]:
    """What /api/response-time answers (the dashboard's status page shows the same)."""
    redis = app[REDIS]
    try:
        async with asyncio.timeout(app[SETTINGS].status_timeout):
            await app[RESPONSE_TIMES].flush(redis)  # this process's latest, too
            return await response_times.read(redis)
    except Exception:
        raise Unavailable("response times are kept in Redis, which is unreachable") from None


async def _api_started_at(request: web.Request) -> datetime:
    """The earliest start among the API processes alive now; this process's if Redis is away."""
    own = request.app[STARTED_AT]
    try:
        async with asyncio.timeout(request.app[SETTINGS].status_timeout):
            processes = await presence.alive(request.app[REDIS], presence.API)
    except Exception:
        return own
    starts = [datetime.fromisoformat(p["started_at"]) for p in processes.values() if "started_at" in p]
    return min([own, *starts])


@routes.get("/api/uptime")
async def get_uptime(request: web.Request) -> web.Response:
    return ok(**await uptime_numbers(request))


async def uptime_numbers(request: web.Request) -> dict[str, Any]:
    """What /api/uptime answers (the dashboard's status page shows the same)."""
    now = datetime.now(UTC)
    started_at = await _api_started_at(request)
    try:
        async with request.app[POOL].acquire(timeout=request.app[SETTINGS].status_timeout) as conn:
            windows = await uptime.uptime(conn, now)
    except Exception:
        raise Unavailable("uptime history is kept in the database, which is unreachable") from None
    return {
        "started_at": started_at,
        "uptime_seconds": round((now - started_at).total_seconds(), 3),
        "sample_interval_seconds": uptime.SAMPLE_SECONDS,
        "uptime": windows,
    }


async def _reporter(app: web.Application) -> AsyncIterator[None]:
    member = presence.this_process()
    info = {"started_at": app[STARTED_AT].isoformat()}
    last_beat = 0.0

    async def beat() -> None:
        # Checked every second, so a beat that failed (Redis away) is retried within a second.
        nonlocal last_beat
        if time.monotonic() - last_beat >= API_BEAT_SECONDS:
            await presence.beat(app[REDIS], presence.API, member, info)
            last_beat = time.monotonic()

    task = periodic.start(FLUSH_SECONDS, beat, what="status report to redis", log=log, level=logging.DEBUG)
    yield
    await periodic.stop(task)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(app[SETTINGS].status_timeout):
            await presence.leave(app[REDIS], presence.API, member)


def setup(app: web.Application) -> None:
    """Status routes and the reporter (after the resources)."""
    app[STARTED_AT] = datetime.now(UTC)
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_reporter)
