"""Opsgenie Alert API, drop-in: ``POST /v2/alerts`` (create), ``POST /v2/alerts/{alias}/close``
and ``/acknowledge`` (``?identifierType=alias``), authenticated by ``Authorization: GenieKey
<webhook token>``, answered in Opsgenie's shapes (``202 {"result", "took", "requestId"}``; errors
``{"message", "took", "requestId"}``, 422 with ``errors`` by field).

The webhook is named by the key, so it is looked up before the body is read, as for POST /<token>;
an unknown key is Opsgenie's 401. The queueing is engine.alerts.inbound.accept_alert; the checks
and the body queued are engine.alerts.opsgenie_api. ``requestId`` of a 202 is the alert's id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from aiohttp import web

from api.bodies import read_body
from api.dropin import vendor_errors
from api.observability import count_alert_accepted
from api.state import POOL, REDIS, REQUEST_ID, SETTINGS, TOKENS
from engine.alerts import opsgenie_api
from engine.alerts.inbound import accept_alert
from engine.errors import MonodutyError, NotFound, Unauthorized

routes = web.RouteTableDef()

STARTED = web.RequestKey("opsgenie_started", float)
NOT_AUTHENTICATED = "Could not authenticate"


def _took(request: web.Request) -> float:
    return round(time.perf_counter() - request.get(STARTED, time.perf_counter()), 3)


def _refusal(request: web.Request, exc: MonodutyError, headers: dict[str, str]) -> web.Response:
    status, message = exc.status, exc.message
    if isinstance(exc, NotFound | Unauthorized):
        status, message = 401, NOT_AUTHENTICATED  # an unknown key and a missing one alike
    body: dict[str, object] = {"message": message}
    if isinstance(exc, opsgenie_api.Unprocessable):
        body["errors"] = exc.errors
    body.update(took=_took(request), requestId=str(uuid.uuid4()))
    return web.json_response(body, status=status, headers=headers)


async def _accept(request: web.Request, prepare: Callable[[bytes], bytes]) -> web.Response:
    request[STARTED] = time.perf_counter()
    token = opsgenie_api.genie_key(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized(NOT_AUTHENTICATED)
    settings = request.app[SETTINGS]
    accepted = await accept_alert(
        request.app[REDIS],
        request.app[POOL],
        token,
        lambda: read_body(request, settings.inbound_body_limit),
        "application/json",
        request_id=request[REQUEST_ID],
        headers=request.headers,
        limit=settings.rate_limit_inbound,
        client=request.remote,
        tokens=request.app[TOKENS],
        prepare=prepare,
    )
    if accepted.queued:
        count_alert_accepted(request)
    body = {"result": "Request will be processed", "took": _took(request), "requestId": accepted.alert_id}
    return web.json_response(body, status=202)


@routes.post("/v2/alerts")
@vendor_errors(_refusal)
async def create_alert(request: web.Request) -> web.Response:
    return await _accept(request, opsgenie_api.create_body)


@routes.post("/v2/alerts/{identifier}/close")
@vendor_errors(_refusal)
async def close_alert(request: web.Request) -> web.Response:
    return await _on_alias(request, "close")


@routes.post("/v2/alerts/{identifier}/acknowledge")
@vendor_errors(_refusal)
async def acknowledge_alert(request: web.Request) -> web.Response:
    return await _on_alias(request, "acknowledge")


async def _on_alias(request: web.Request, action: str) -> web.Response:
    alias = request.match_info["identifier"]
    kind = request.query.get("identifierType")
    return await _accept(request, lambda raw: opsgenie_api.action_body(action, alias, kind, raw))
