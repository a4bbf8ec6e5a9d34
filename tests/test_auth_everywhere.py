"""Every /api route the app serves needs a caller, except the documented public ones; walked from
the router itself, so a route added later is covered without a new line here."""

from __future__ import annotations

import re
import uuid

from aiohttp.test_utils import TestClient

from api.auth import PUBLIC_PATHS

ANONYMOUS = [
    {},
    {"Authorization": "Bearer md_live_not-a-real-key"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Cookie": "monoduty_session=forged"},
]


async def test_every_private_api_route_refuses_anonymous_callers(client: TestClient) -> None:
    routes = [
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    ]
    private = [(m, p) for m, p in routes if p not in PUBLIC_PATHS]
    assert len(private) >= 15  # the walk found the app's routes
    for method, pattern in private:
        path = re.sub(r"\{\w+\}", str(uuid.uuid4()), pattern)
        for headers in ANONYMOUS:
            resp = await client.request(method, path, json={}, headers=headers)
            assert resp.status == 401, f"{method} {pattern} with {headers}: {resp.status}"
            body = await resp.json()
            assert body["success"] is False and body["code"] in (
                "UNAUTHORIZED",
                "INVALID_API_KEY",
                "SESSION_EXPIRED",
            )


# Every route outside /api/ and why it needs no caller, or how it checks one: a route added later
# fails the test below until it is listed here, so being public is always a decision.
SESSION = "a dashboard page: needs a web session (a stranger is sent to /sign-in; tests/test_dashboard.py)"
PUBLIC_ROUTES = {
    "/healthz": "liveness for a supervisor",
    "/readyz": "readiness for a load balancer",
    "/metrics": "Prometheus; MONODUTY_METRICS_TOKEN guards it off loopback",
    "/{token}": "inbound alerts: the secret URL is the credential",
    "/hooks/{token}": "inbound alerts (the seed's second form of the URL)",
    "/{token}/v2/enqueue": "PagerDuty Events v2 drop-in: the URL's token",
    "/v2/enqueue": "PagerDuty Events v2 drop-in: routing_key is a webhook token",
    "/v2/alerts": "Opsgenie Alert API drop-in: GenieKey is a webhook token",
    "/v2/alerts/{identifier}/acknowledge": "Opsgenie drop-in, as above",
    "/v2/alerts/{identifier}/close": "Opsgenie drop-in, as above",
    "/ical/{token}.ics": "calendar feeds: a signed token per feed",
    "/invite/{token}": "set-password page of an invite: a one-time token",
    "/a/{token}": "a page's action links (acknowledge, resolve): a signed grant per message",
    "/twilio/voice/{token}": "keys pressed during a page's call: Twilio's signature and a signed grant",
    "/twilio/sms": "replies to SMS pages: Twilio's signature, and the sender's verified number",
    "/twilio/status/{delivery_id}": "receipts of our SMS and calls: Twilio's signature and the message's sid",
    # The dashboard (api/dashboard/): its sign-in pages and files are public, the rest needs a session.
    "/sign-in": "the dashboard's sign-in form: email and password (throttled as the API's login)",
    "/sign-up": "the dashboard's sign-up form: 404 unless MONODUTY_ALLOW_SIGNUP",
    "/login/{token}": "the one-time login link `monoduty dev` prints: the token, once, 15 minutes",
    "/static/{name}": "the dashboard's stylesheet and scripts: public files",
    "/forgot-password": "asks for a password reset email: the same answer for any address",
    "/reset-password/{token}": "sets a new password: the emailed one-time token, 30 minutes",
    "/sign-out": SESSION,
    "/": SESSION,
    "/incidents/{id}": SESSION,
    "/incidents/{id}/{action}": SESSION + "; and its CSRF token",
    "/incidents/{id}/notes": SESSION + "; and its CSRF token",
    "/incidents/{id}/reassign": SESSION + "; and its CSRF token",
    "/incidents/bulk": SESSION + "; and its CSRF token",
    "/webhooks": SESSION + "; POST: and its CSRF token",
    "/webhooks/new": SESSION,
    "/webhooks/{id}": SESSION + "; POST (the edit form): and its CSRF token",
    "/webhooks/{id}/edit": SESSION,
    "/webhooks/{id}/pause": SESSION + "; and its CSRF token",
    "/webhooks/{id}/resume": SESSION + "; and its CSRF token",
    "/webhooks/{id}/test": SESSION + "; and its CSRF token",
    "/webhooks/{id}/delete": SESSION + "; POST: and its CSRF token",
    "/webhooks/{id}/heartbeats": SESSION + "; and its CSRF token",
    "/webhooks/{id}/heartbeats/{heartbeat_id}/pause": SESSION + "; and its CSRF token",
    "/webhooks/{id}/heartbeats/{heartbeat_id}/resume": SESSION + "; and its CSRF token",
    "/events": SESSION + " (Server-Sent Events of its teams' incidents)",
    "/on-call": SESSION,
    "/on-call/new-schedule": SESSION + "; POST: and its CSRF token",
    "/on-call/schedules/{id}/overrides": SESSION + "; and its CSRF token",
    "/on-call/schedules/{id}/overrides/{override_id}/delete": SESSION + "; and its CSRF token",
    "/on-call/policies/new": SESSION + "; POST: and its CSRF token",
    "/on-call/policies/{id}": SESSION + "; POST: and its CSRF token",
    "/on-call/policies/{id}/delete": SESSION + "; and its CSRF token",
    "/on-call/schedules/{id}/layers": SESSION + "; POST: and its CSRF token",
    "/on-call/schedules/{id}/layers/{index}/delete": SESSION + "; and its CSRF token",
    "/on-call/schedules/{id}/delete": SESSION + "; POST: and its CSRF token",
    "/maintenance": SESSION,
    "/maintenance/windows": SESSION + "; and its CSRF token",
    "/maintenance/windows/{id}/end": SESSION + "; and its CSRF token",
    "/maintenance/silences": SESSION + "; and its CSRF token",
    "/maintenance/silences/{id}/expire": SESSION + "; and its CSRF token",
    "/team": SESSION,
    "/team/new": SESSION + "; and its CSRF token",
    "/team/{id}/members": SESSION + "; and its CSRF token",
    "/team/{id}/members/{user_id}/role": SESSION + "; and its CSRF token",
    "/team/{id}/members/{user_id}/remove": SESSION + "; POST: and its CSRF token",
    "/profile": SESSION,
    "/profile/contact-methods": SESSION + "; and its CSRF token",
    "/profile/contact-methods/{id}/delete": SESSION + "; and its CSRF token",
    "/profile/contact-methods/{id}/send-code": SESSION + "; and its CSRF token",
    "/profile/contact-methods/{id}/verify": SESSION + "; and its CSRF token",
    "/profile/notification-rules": SESSION + "; and its CSRF token",
    "/profile/notification-rules/{id}/delete": SESSION + "; and its CSRF token",
    "/profile/time-zone": SESSION + "; and its CSRF token",
    "/profile/quiet-hours": SESSION + "; and its CSRF token",
    "/profile/quiet-hours/delete": SESSION + "; and its CSRF token",
    "/profile/calendar/rotate": SESSION + "; and its CSRF token",
    "/profile/password": SESSION + "; and its CSRF token",
    "/profile/sessions/{session}/end": SESSION + "; and its CSRF token",
    "/profile/api-keys": SESSION + "; and its CSRF token",
    "/profile/api-keys/{id}/revoke": SESSION + "; and its CSRF token",
    "/inbox": SESSION,
    "/inbox/badge": SESSION + " (the navigation's unread count)",
    "/inbox/{id}/read": SESSION + "; and its CSRF token",
    "/inbox/read-all": SESSION + "; and its CSRF token",
    "/reports": SESSION,
    "/reports/download": SESSION + " (a report file, as POST /api/reports/generate makes it)",
    "/status": SESSION + " (what the public /api/status, /api/response-time and /api/uptime say)",
    "/outbox": SESSION + "; 404 outside `monoduty dev`",
    "/ping/{token}": "a heartbeat's ping: the secret URL is the credential",
    "/ping/{token}/start": "a heartbeat's ping (a run began), as above",
    "/ping/{token}/fail": "a heartbeat's ping (a run failed), as above",
}


async def test_every_route_outside_the_api_is_a_listed_public_one(client: TestClient) -> None:
    outside = {
        route.resource.canonical
        for route in client.app.router.routes()
        if route.resource is not None and not route.resource.canonical.startswith("/api/")
    }
    assert outside == set(PUBLIC_ROUTES)
