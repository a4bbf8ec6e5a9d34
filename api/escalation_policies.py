"""Handlers for /api/escalation-policies; the rules live in engine.oncall.policies."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, wire_names
from api.responses import ok
from api.state import AVAILABLE_TYPES, CLOCK, POOL
from engine.channels.registry import shown_target
from engine.errors import ValidationError
from engine.oncall import policies
from engine.oncall.policies import Policy, PolicyInput, StepInput

routes = web.RouteTableDef()

# Each body's fields: wire name -> the engine's (engine.oncall.policies' inputs).
NAMES = {
    "name": "name",
    "description": "description",
    "teamId": "team_id",
    "repeat": "repeat",
    "steps": "steps",
}
STEP_NAMES = {"delayMinutes": "delay_minutes", "targets": "targets"}
_STEP_FIELD = re.compile(r"\bsteps\[(\d+)\]\.delay_minutes\b")


def _input(body: object) -> PolicyInput:
    given = fields(body, NAMES, text=("name", "description"))
    steps = given.get("steps")
    if isinstance(steps, list):
        given["steps"] = [_step(i, step) for i, step in enumerate(steps)]
    return PolicyInput(**given)


def _step(index: int, step: object) -> object:
    """A step object as the engine's StepInput; anything else is left for the engine to refuse."""
    if not isinstance(step, Mapping):
        return step
    unknown = sorted(set(step) - set(STEP_NAMES))
    if unknown:
        where = f"steps[{index}].{unknown[0]}"
        raise ValidationError(f"unknown field: {where}", field=where)
    return StepInput(**{STEP_NAMES[name]: value for name, value in step.items()})


@contextmanager
def _wire() -> Iterator[None]:
    """The engine's field names back to the wire's, inside steps too (steps[1].delayMinutes)."""
    try:
        with wire_names(NAMES):
            yield
    except ValidationError as exc:
        exc.field = _STEP_FIELD.sub(r"steps[\1].delayMinutes", exc.field or "") or None
        exc.message = _STEP_FIELD.sub(r"steps[\1].delayMinutes", exc.message)
        exc.args = (exc.message,)
        raise


@routes.get("/api/escalation-policies")
async def list_policies(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        found = await policies.list_policies(conn, user.id)
    return ok(escalation_policies=[to_api(p) for p in found], total=len(found))


@routes.post("/api/escalation-policies")
async def create_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = _input(await json_body(request))
    available = request.app[AVAILABLE_TYPES]
    async with request.app[POOL].acquire() as conn:
        with _wire():
            policy = await policies.create_policy(
                conn, user.id, wanted, now=request.app[CLOCK].now(), available=available
            )
    return ok(http_status=201, escalation_policy=to_api(policy))


@routes.get("/api/escalation-policies/{id}")
async def get_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    policy_id = policies.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        policy = await policies.get_policy(conn, user.id, policy_id)
    return ok(escalation_policy=to_api(policy))


@routes.patch("/api/escalation-policies/{id}")
async def update_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    policy_id = policies.parse_id(request.match_info["id"])
    wanted = _input(await json_body(request))
    available = request.app[AVAILABLE_TYPES]
    async with request.app[POOL].acquire() as conn:
        with _wire():
            policy = await policies.update_policy(
                conn, user.id, policy_id, wanted, now=request.app[CLOCK].now(), available=available
            )
    return ok(escalation_policy=to_api(policy))


@routes.delete("/api/escalation-policies/{id}")
async def delete_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    policy_id = policies.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await policies.delete_policy(conn, user.id, policy_id)
    return ok(deleted=str(policy_id))


def to_api(policy: Policy) -> dict[str, Any]:
    return {
        "id": str(policy.id),
        "team_id": str(policy.team_id),
        "name": policy.name,
        "description": policy.description,
        "repeat": policy.repeat,
        "steps": [
            {
                "position": step.position,
                "delay_minutes": step.delay_minutes,
                "targets": [_target(target.to_json()) for target in step.targets],
            }
            for step in policy.steps
        ],
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
    }


def _target(wire: dict[str, str]) -> dict[str, str]:
    """A step's target; a channel target that is a credential (an Apprise URL) masked."""
    if wire.get("type") == "channel":
        return {**wire, "target": shown_target(wire["channel"], wire["target"])}
    return wire
