"""``GET /events``: the Server-Sent Events that keep open dashboard pages current.

A change of an incident of one of the caller's teams (engine.incidents.live: PostgreSQL
LISTEN/NOTIFY) is sent as two events, ``incident`` (the list refreshes) and
``incident-<id>`` (that incident's page does); ``resync`` (at connect, and after the feed lost
PostgreSQL for a while) asks every element to read again, since it may have missed a change.
The events say only *that* something changed: the page asks for its fragment the usual way, so
what it shows is checked and rendered as on a first load.

While quiet the stream checks every ``SESSION_CHECK`` seconds that its session still exists
(without extending it); once it does not (signed out elsewhere, expired) it sends
``signed-out`` and ends, and the page's next request goes to sign-in.
"""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp_sse import sse_response

from api.auth import current_session, current_user
from api.state import POOL, REDIS
from engine.auth import sessions
from engine.incidents.live import CLOSED, RESYNC, Feed
from engine.teams.membership import team_ids

routes = web.RouteTableDef()
FEED = web.AppKey("incident_feed", Feed)
SESSION_CHECK = 20.0


@routes.get("/events", name="dashboard.events")
async def events(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    session = current_session(request)
    assert session is not None  # the guard lets only a signed-in browser here
    async with request.app[POOL].acquire() as conn:
        teams = await team_ids(conn, user.id)
    subscription = await request.app[FEED].subscribe(teams)
    try:
        async with sse_response(request) as stream:
            await stream.send("{}", event=RESYNC)
            while stream.is_connected():
                change = await subscription.next(SESSION_CHECK)
                if change is None:
                    if not await sessions.alive(request.app[REDIS], session):
                        await stream.send("{}", event="signed-out")
                        break
                    continue
                if change.kind == CLOSED:
                    break
                if change.incident_id is None:
                    await stream.send("{}", event=RESYNC)
                    continue
                data = json.dumps({"incident_id": str(change.incident_id), "kind": change.kind})
                await stream.send(data, event="incident")
                await stream.send(data, event=f"incident-{change.incident_id}")
    finally:
        subscription.close()
    return stream
