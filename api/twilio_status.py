"""``POST /twilio/status/<delivery id>``: Twilio's status callbacks for the SMS and calls we create
(engine.channels.twilio.status_callback names this URL in each), read into a receipt
(engine.alerts.receipts) on the delivery.

Nothing is read before the request's X-Twilio-Signature checks out (403, nothing changed). The
message is matched by its sid (``MessageSid`` or ``CallSid``) against the delivery's. A callback
that does not move the receipt forward (the same one again, one out of order) changes nothing and
is answered as any other (Twilio wants a 2xx, nothing more), ``recorded`` saying whether it
changed the delivery. A receipt that leaves nobody of an escalation's step reachable wakes the sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from aiohttp import web

from api.follow_ups import queue_follow_ups
from api.responses import ok
from api.state import CLOCK, POOL
from api.twilio_requests import signed_form
from engine.alerts import receipts
from engine.channels.twilio import STATUS_ROUTE
from engine.errors import ValidationError
from engine.incidents.channel_actions import Outcome

routes = web.RouteTableDef()

DELIVERY = r"{delivery_id:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}}"
# Twilio's parameter names -> Report's, for a message and for a call.
MESSAGE = {"MessageSid": "provider_id", "MessageStatus": "provider_status", "ErrorCode": "error_code"}
CALL = {
    "CallSid": "provider_id",
    "CallStatus": "provider_status",
    "ErrorCode": "error_code",
    "CallDuration": "call_seconds",
    "AnsweredBy": "answered_by",
}
MAX_TEXT = 64  # sids are 34 characters, statuses and codes shorter still


@routes.post(f"{STATUS_ROUTE}{DELIVERY}")
async def status_callback(request: web.Request) -> web.Response:
    form = await signed_form(request)
    delivery_id = uuid.UUID(request.match_info["delivery_id"])
    report = _report(form)
    async with request.app[POOL].acquire() as conn:
        recorded = await receipts.record(conn, delivery_id, report, request.app[CLOCK].now())
    if recorded.wake_ups:
        await queue_follow_ups(request, Outcome(recorded.moved_on, [], [], recorded.wake_ups))
    return ok(recorded=recorded.changed)


def _report(form: Mapping[str, str]) -> receipts.Report:
    """The callback's parameters as a Report: a call's when it names a CallSid, else a message's."""
    names, channel = (CALL, "CALL") if "CallSid" in form else (MESSAGE, "SMS")
    given: dict[str, str | None] = {}
    for wire, python in names.items():
        value = form.get(wire) or None
        if value is not None and len(value) > MAX_TEXT:
            raise ValidationError(f"{wire} is at most {MAX_TEXT} characters", field=wire)
        given[python] = value
    sid, status = given["provider_id"], given["provider_status"]
    if sid is None or status is None:
        sid_name, status_name = list(names)[:2]
        raise ValidationError(f"{sid_name} and {status_name} are required", field=sid_name)
    seconds = given.get("call_seconds")
    if seconds is not None and not (seconds.isascii() and seconds.isdigit()):
        raise ValidationError("CallDuration must be a number of seconds", field="CallDuration")
    return receipts.Report(
        channel=channel,
        provider_id=sid,
        provider_status=status,
        error_code=given["error_code"],
        call_seconds=int(seconds) if seconds is not None else None,
        answered_by=given.get("answered_by"),
    )
