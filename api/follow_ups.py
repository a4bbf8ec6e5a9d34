"""What an action taken from a message leaves to do once it has committed: queue its RESOLVED
notices and its escalation wake-ups (engine.incidents.channel_actions.Outcome). One place for the
action page, the call's keys and SMS replies."""

from __future__ import annotations

from aiohttp import web

from api.state import CLOCK, REDIS, REQUEST_ID
from engine import queue
from engine.incidents.channel_actions import Outcome
from engine.oncall import escalation


async def queue_follow_ups(request: web.Request, outcome: Outcome) -> None:
    for delivery_id in outcome.notices:
        await queue.enqueue_delivery(request.app[REDIS], str(delivery_id), request_id=request[REQUEST_ID])
    await escalation.enqueue_wake_ups(request.app[REDIS], request.app[CLOCK], outcome.wake_ups)
