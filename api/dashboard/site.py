"""Wiring the dashboard into the app: templates, routes, the live feed, response headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.dashboard import (
    guard,
    heartbeats,
    inbox,
    incidents,
    live,
    maintenance,
    oncall,
    outbox,
    password_reset,
    policies,
    profile,
    render,
    reports,
    sign_in,
    status_page,
    team,
    webhooks,
)
from api.dashboard.assets import ASSETS, Assets
from api.state import SETTINGS
from engine.incidents.live import Feed

routes = web.RouteTableDef()


@routes.get("/static/{name:[A-Za-z0-9._-]+}", name="dashboard.static")
async def static_file(request: web.Request) -> web.Response:
    return request.app[ASSETS].response(request.match_info["name"])


def setup(app: web.Application) -> None:
    """Add the dashboard's routes (before the inbound catch-all) and what they need."""
    render.setup(app)
    app[ASSETS] = Assets()
    app.router.add_routes(routes)
    app.router.add_routes(sign_in.routes)
    app.router.add_routes(password_reset.routes)
    app.router.add_routes(incidents.routes)
    app.router.add_routes(webhooks.routes)
    app.router.add_routes(heartbeats.routes)
    app.router.add_routes(oncall.routes)
    app.router.add_routes(policies.routes)
    app.router.add_routes(team.routes)
    app.router.add_routes(maintenance.routes)
    app.router.add_routes(live.routes)
    app.router.add_routes(profile.routes)
    app.router.add_routes(inbox.routes)
    app.router.add_routes(reports.routes)
    app.router.add_routes(status_page.routes)
    app.router.add_routes(outbox.routes)
    app.on_response_prepare.append(guard.add_headers)
    app.cleanup_ctx.append(_feed)
    app.on_shutdown.append(_end_streams)


async def _feed(app: web.Application) -> AsyncIterator[None]:
    """One listening connection per process, opened when the first page subscribes."""
    # LISTEN needs one server session throughout: not through a transaction pool (PgBouncer).
    database_url = app[SETTINGS].session_database_url
    assert database_url
    app[live.FEED] = Feed(database_url)
    yield
    await app[live.FEED].close()


async def _end_streams(app: web.Application) -> None:
    """A stopping server ends its event streams first (browsers reconnect to another)."""
    if live.FEED in app:
        await app[live.FEED].close()
