"""Calendar feeds: ``GET /ical/<token>.ics`` (no credentials: the signed token is the secret),
the URLs in the API's answers, and rotating them (engine.oncall.feeds).

The access log names this route by its pattern (``/ical/{token}.ics``), never the token."""

from __future__ import annotations

import uuid

from aiohttp import web

from api.auth import current_user
from api.responses import ok
from api.state import CLOCK, POOL, SETTINGS, public_url
from engine.errors import NotFound
from engine.oncall import crud, feeds
from engine.oncall.feeds import Feed, FeedKind

routes = web.RouteTableDef()

CONTENT_TYPE = "text/calendar; charset=utf-8"


def feed_url(request: web.Request, feed: Feed) -> str | None:
    """The feed's URL, or None when the server has no secret key to sign it with."""
    secret_key = request.app[SETTINGS].secret_key
    if secret_key is None:
        return None
    return f"{public_url(request)}/ical/{feeds.token(secret_key, feed)}.ics"


def schedule_feed_url(request: web.Request, schedule_id: uuid.UUID, version: int) -> str | None:
    return feed_url(request, Feed(FeedKind.SCHEDULE, schedule_id, version))


def _required(url: str | None) -> str:
    if url is None:
        raise feeds.no_secret_key()
    return url


@routes.get("/ical/{token}.ics")
async def calendar(request: web.Request) -> web.Response:
    feed = feeds.parse(request.app[SETTINGS].secret_key, request.match_info["token"])
    if feed is None:
        raise NotFound("no such calendar feed", code="FEED_NOT_FOUND")
    async with request.app[POOL].acquire() as conn:
        body = await feeds.render(conn, feed, request.app[CLOCK].now())
    if body is None:  # revoked (rotated), or its schedule or user is gone
        raise NotFound("no such calendar feed", code="FEED_NOT_FOUND")
    # Calendar clients poll; the token must not linger in shared caches.
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "private, no-store"}
    )


@routes.get("/api/me/ical")
async def my_feed(request: web.Request) -> web.Response:
    """The URL of the caller's own feed: their shifts across the schedules of all their teams."""
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        version = await feeds.user_feed_version(conn, user.id)
    return ok(ical_url=_required(feed_url(request, Feed(FeedKind.USER, user.id, version))))


@routes.post("/api/me/ical/rotate")
async def rotate_my_feed(request: web.Request) -> web.Response:
    """A new URL for the caller's feed; the old one stops working."""
    user = current_user(request)
    _required(feed_url(request, Feed(FeedKind.USER, user.id, 0)))
    async with request.app[POOL].acquire() as conn:
        version = await feeds.rotate_user_feed(conn, user.id)
    return ok(ical_url=_required(feed_url(request, Feed(FeedKind.USER, user.id, version))))


@routes.post("/api/schedules/{id}/ical/rotate")
async def rotate_schedule_feed(request: web.Request) -> web.Response:
    """A new URL for the schedule's feed (admins and up); the old one stops working."""
    user = current_user(request)
    schedule_id = crud.parse_id(request.match_info["id"])
    _required(schedule_feed_url(request, schedule_id, 0))
    async with request.app[POOL].acquire() as conn:
        version = await feeds.rotate_schedule_feed(conn, user.id, schedule_id)
    return ok(ical_url=_required(schedule_feed_url(request, schedule_id, version)))
