"""System status routes (/api/status, /api/response-time, /api/uptime, /readyz) and what feeds them.

Public and secret-free. ``setup`` adds the routes, the timing middleware and a background task
that, about once a second, flushes this process's response times to Redis and (every
``API_BEAT_SECONDS``) says this API process is alive, so that every process answers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from api.middlewares import route_name
from api.responses import ok
from api.state import POOL, REDIS, SETTINGS
from engine import registry, response_times, status, uptime
from engine.errors import Unavailable

log = logging.getLogger("monoduty.api")

RESPONSE_TIMES = web.AppKey("response_times", response_times.Recorder)
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
    redis = request.app[REDIS]
    try:
        async with asyncio.timeout(request.app[SETTINGS].status_timeout):
            await request.app[RESPONSE_TIMES].flush(redis)  # this process's latest, too
            numbers = await response_times.read(redis)
    except Exception:
        raise Unavailable("response times are kept in Redis, which is unreachable") from None
    return ok(**numbers)


async def _api_started_at(request: web.Request) -> datetime:
    """The earliest start among the API processes alive now; this process's if Redis is away."""
    own = request.app[STARTED_AT]
    try:
        async with asyncio.timeout(request.app[SETTINGS].status_timeout):
            processes = await registry.alive(request.app[REDIS], registry.API)
    except Exception:
        return own
    starts = [datetime.fromisoformat(p["started_at"]) for p in processes.values() if "started_at" in p]
    return min([own, *starts])


@routes.get("/api/uptime")
async def get_uptime(request: web.Request) -> web.Response:
    now = datetime.now(UTC)
    started_at = await _api_started_at(request)
    try:
        async with request.app[POOL].acquire(timeout=request.app[SETTINGS].status_timeout) as conn:
            windows = await uptime.uptime(conn, now)
    except Exception:
        raise Unavailable("uptime history is kept in the database, which is unreachable") from None
    return ok(
        started_at=started_at,
        uptime_seconds=round((now - started_at).total_seconds(), 3),
        sample_interval_seconds=uptime.SAMPLE_SECONDS,
        uptime=windows,
    )


def _group(request: web.Request) -> str | None:
    if request.path.startswith("/api/"):
        return "api"
    if "{token" in route_name(request):
        return "inbound"
    return None


def record_response_time(request: web.Request, elapsed_ms: float) -> None:
    """Keep an /api or inbound request's time in this process's recorder (no I/O here); the
    request middleware in api/observability.py measures once and hands it over."""
    group = _group(request)
    if group is not None:
        request.app[RESPONSE_TIMES].record(group, elapsed_ms)


async def _report(app: web.Application) -> None:
    member = registry.this_process()
    info = {"started_at": app[STARTED_AT].isoformat()}
    last_beat = 0.0
    while True:
        try:
            await app[RESPONSE_TIMES].flush(app[REDIS])
            if time.monotonic() - last_beat >= API_BEAT_SECONDS:
                await registry.beat(app[REDIS], registry.API, member, info)
                last_beat = time.monotonic()
        except Exception as exc:  # Redis away: try again next time; never stop reporting
            log.debug("status report to redis failed: %s", type(exc).__name__)
        await asyncio.sleep(FLUSH_SECONDS)


async def _reporter(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_report(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(Exception):
        async with asyncio.timeout(app[SETTINGS].status_timeout):
            await registry.leave(app[REDIS], registry.API, registry.this_process())


def setup(app: web.Application) -> None:
    """Status routes, the timing middleware's recorder, and the reporter (after the resources)."""
    app[RESPONSE_TIMES] = response_times.Recorder()
    app[STARTED_AT] = datetime.now(UTC)
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_reporter)
