"""PagerDuty Events API v2, drop-in: ``POST /v2/enqueue`` (the webhook named by ``routing_key``)
and ``POST /<token>/v2/enqueue`` (named by the URL), answered in PagerDuty's shapes.

With the token in the URL a ``routing_key`` in the body is ignored: a sender moving over then
changes only its URL (Alertmanager's and Grafana's PagerDuty configs require a routing key and
keep the old one). The queueing itself is engine.alerts.inbound.accept_alert, the same as POST
/<token>; this module checks the event (engine.alerts.pagerduty_events) and words the answers.
"""

from __future__ import annotations

from aiohttp import web

from api.bodies import read_body
from api.dropin import vendor_errors
from api.observability import count_alert_accepted
from api.state import POOL, REDIS, REQUEST_ID, SETTINGS, TOKENS
from engine.alerts.inbound import TOKEN_SHAPE, accept_alert, refuse_guessing
from engine.alerts.pagerduty_events import Event, InvalidEvent, read_event
from engine.errors import MonodutyError, NotFound

routes = web.RouteTableDef()

# What PagerDuty answers for a routing key it does not know (400 "invalid event").
UNKNOWN_KEY = "Invalid routing key"


def _refusal(request: web.Request, exc: MonodutyError, headers: dict[str, str]) -> web.Response:
    if isinstance(exc, InvalidEvent):
        status, word, errors = 400, "invalid event", exc.errors
    elif isinstance(exc, NotFound):
        status, word, errors = 400, "invalid event", [UNKNOWN_KEY]
    elif exc.status == 429:
        status, word, errors = 429, "throttle event", [exc.message]
    else:
        status, word, errors = exc.status, "error", [exc.message]
    message = "Event object is invalid" if word == "invalid event" else exc.message
    body = {"status": word, "message": message, "errors": errors}
    return web.json_response(body, status=status, headers=headers)


class _Event:
    """The body as read (once) and the event it holds, for the 202's ``dedup_key``."""

    def __init__(self, request: web.Request, *, token_in_path: bool) -> None:
        self.request = request
        self.token_in_path = token_in_path
        self.raw: bytes | None = None
        self._event: Event | None = None

    async def read(self) -> bytes:
        if self.raw is None:
            self.raw = await read_body(self.request, self.request.app[SETTINGS].inbound_body_limit)
        return self.raw

    def event(self, raw: bytes) -> Event:
        """The event, checked once: a trigger's generated key must be the one queued and answered."""
        if self._event is None:
            self._event = read_event(raw, token_in_path=self.token_in_path)
        return self._event

    def prepare(self, raw: bytes) -> bytes:
        return self.event(raw).body


async def _enqueue(request: web.Request, token: str, event: _Event) -> web.Response:
    settings = request.app[SETTINGS]
    accepted = await accept_alert(
        request.app[REDIS],
        request.app[POOL],
        token,
        event.read,
        "application/json",
        request_id=request[REQUEST_ID],
        headers=request.headers,
        limit=settings.rate_limit_inbound,
        client=request.remote,
        tokens=request.app[TOKENS],
        prepare=event.prepare,
    )
    if accepted.queued:
        count_alert_accepted(request)
    # A signed sender's retry is answered without being queued or prepared: its key from its body.
    key = event.event(await event.read()).dedup_key
    answer = {"status": "success", "message": "Event processed", "dedup_key": key}
    return web.json_response(answer, status=202)


@routes.post("/v2/enqueue")
@vendor_errors(_refusal)
async def enqueue(request: web.Request) -> web.Response:
    # The webhook is named inside the body, so the body is read first; an address that has
    # used up its unknown-token failures is refused before that (as POST /<token> refuses it
    # before the database), and every unknown routing key counts as one.
    settings = request.app[SETTINGS]
    await refuse_guessing(request.app[REDIS], request.remote, settings.rate_limit_inbound)
    event = _Event(request, token_in_path=False)
    routing_key = event.event(await event.read()).routing_key
    if routing_key is None or not TOKEN_SHAPE.fullmatch(routing_key):
        raise NotFound(UNKNOWN_KEY)  # no webhook has such a token: not worth a lookup
    return await _enqueue(request, routing_key, event)


# Any segment: one that cannot be a token is PagerDuty's "Invalid routing key", not a bare 404.
@routes.post("/{token}/v2/enqueue")
@vendor_errors(_refusal)
async def enqueue_at_token(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    if not TOKEN_SHAPE.fullmatch(token):
        raise NotFound(UNKNOWN_KEY)
    return await _enqueue(request, token, _Event(request, token_in_path=True))
