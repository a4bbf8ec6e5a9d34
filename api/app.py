"""The aiohttp application: state, middlewares and routes. Handlers live in their own modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api import (
    accounts,
    action_links,
    api_keys,
    caches,
    contact_methods,
    dev,
    escalation_policies,
    feeds,
    heartbeats,
    inbound,
    incidents,
    invite_page,
    maintenance_windows,
    notifications,
    observability,
    opsgenie,
    pagerduty,
    pings,
    quiet_hours,
    reports,
    schedules,
    security,
    silences,
    status,
    teams,
    twilio_sms,
    twilio_status,
    twilio_voice,
    webhooks,
)
from api.auth import auth_middleware
from api.dashboard import site as dashboard
from api.dashboard.guard import dashboard_middleware
from api.middlewares import error_middleware, request_id_middleware
from api.responses import ok
from api.state import API_BODY_LIMIT, AVAILABLE_TYPES, CLOCK, POOL, REDIS, SETTINGS
from engine import db, queue
from engine.channels.registry import deliverable
from engine.clock import SYSTEM, Clock, align_queue, database_offset
from engine.settings import Settings

# JSON bodies of /api routes; inbound alerts have their own limit (MONODUTY_INBOUND_BODY_LIMIT).
JSON_BODY_LIMIT = 1024 * 1024


async def healthz(request: web.Request) -> web.Response:
    return ok(status="alive")


def create_app(settings: Settings, *, clock: Clock = SYSTEM) -> web.Application:
    """Build the app; Postgres and Redis are opened on start-up and closed on clean-up."""
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs settings.database_url and settings.redis_url")
    app = web.Application(
        middlewares=[
            request_id_middleware,
            observability.observe_middleware,
            error_middleware,
            security.https_middleware,
            security.ratelimit_middleware,
            auth_middleware,
            dashboard_middleware,  # the dashboard's pages: the session, CSRF, HTML errors
        ],
        client_max_size=JSON_BODY_LIMIT,
        # aiohttp would inflate compressed bodies as they arrive, read or not, on the event
        # loop and past any limit; api/bodies.py inflates them itself, bounded (issue 8).
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[API_BODY_LIMIT] = JSON_BODY_LIMIT
    app[AVAILABLE_TYPES] = deliverable(settings)
    app.cleanup_ctx.append(_resources)
    caches.setup(app)
    status.setup(app)
    security.setup(app)
    observability.setup(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_routes(webhooks.routes)
    app.router.add_routes(heartbeats.routes)
    app.router.add_routes(notifications.routes)
    app.router.add_routes(incidents.routes)
    app.router.add_routes(teams.routes)
    app.router.add_routes(escalation_policies.routes)
    app.router.add_routes(maintenance_windows.routes)
    app.router.add_routes(silences.routes)
    app.router.add_routes(schedules.routes)
    app.router.add_routes(feeds.routes)
    app.router.add_routes(invite_page.routes)
    app.router.add_routes(action_links.routes)
    app.router.add_routes(reports.routes)
    app.router.add_routes(accounts.routes)
    app.router.add_routes(api_keys.routes)
    contact_methods.setup(app)
    app.router.add_routes(quiet_hours.routes)
    app.router.add_routes(dev.routes)
    app.router.add_routes(pagerduty.routes)  # drop-in PagerDuty Events v2 and Opsgenie Alert API
    app.router.add_routes(opsgenie.routes)
    app.router.add_routes(twilio_voice.routes)  # a call's key presses, from Twilio
    app.router.add_routes(twilio_sms.routes)  # replies to SMS pages
    app.router.add_routes(twilio_status.routes)  # receipts: what became of our SMS and calls
    dashboard.setup(app)  # the web dashboard at /
    pings.add_routes(app)
    inbound.add_routes(app)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url and settings.redis_url
    app[POOL] = await db.create_pool(settings.database_url, pgbouncer=settings.pgbouncer)
    # Queue the alerts on the database's clock, as the workers poll them (engine.clock: skew).
    async with app[POOL].acquire() as conn:
        align_queue(await database_offset(conn))
    app[REDIS] = await queue.connect(settings.redis_url)
    yield
    await app[REDIS].aclose()
    await app[POOL].close()
