"""Escalation policies in the dashboard: the create and edit form (steps, delays, targets, repeat)
and delete.

The form becomes the engine's PolicyInput with StepInput steps (engine.oncall.policies, as
``/api/escalation-policies`` does) and the engine's checks are the form's: a ValidationError is
shown at the step and field it names. A step's targets are ticked from the team's members and
schedules; a channel target the policy already has (set through the API) is kept as a box too.
Empty steps (no delay, nothing ticked) are left out, so "Add a step" never leaves half a step.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from api.auth import current_user
from api.dashboard.field_errors import at_field, number
from api.dashboard.oncall import default_team
from api.dashboard.render import form, render, see_other
from api.state import AVAILABLE_TYPES, CLOCK, POOL
from engine import db
from engine.errors import ValidationError
from engine.oncall import crud, policies
from engine.oncall.policies import ChannelTarget, Policy, PolicyInput, StepInput
from engine.teams import Role
from engine.teams.members import list_members, list_teams
from engine.validate import UNSET

routes = web.RouteTableDef()
FIELDS = {
    "name": ("name", "Name"),
    "description": ("description", "Description"),
    "repeat": ("repeat", "Repeat"),
    "team_id": ("team", "Team"),
    "steps": ("steps", "Steps"),
}
_STEP = re.compile(r"steps\[(\d+)\](?:\.(\w+))?")
STEP_LABELS = {"delay_minutes": ("delay", "Wait"), "targets": ("targets", "Who")}


def _target_value(target: policies.StepTarget) -> str:
    if isinstance(target, ChannelTarget):
        return f"channel:{target.channel}:{target.target}"
    return f"{target.type.value}:{target.id}"


def _target_json(value: str) -> dict[str, str]:
    kind, _, rest = value.partition(":")
    if kind == "channel":
        channel, _, target = rest.partition(":")
        return {"type": "channel", "channel": channel, "target": target}
    return {"type": kind, "id": rest}


def steps_of(
    given: dict[str, str], targets: dict[str, list[str]], count: int
) -> tuple[list[StepInput], list[int]]:
    """The form's steps as StepInputs, and the form index of each (empty ones are left out)."""
    steps, where = [], []
    for i in range(count):
        if given.get(f"step-{i}-remove"):
            continue
        delay, ticked = given.get(f"step-{i}-delay", "").strip(), targets.get(f"step-{i}-target", [])
        if not delay and not ticked:
            continue
        steps.append(StepInput(delay_minutes=number(delay), targets=[_target_json(t) for t in ticked]))
        where.append(i)
    return steps, where


def step_error(exc: ValidationError, where: list[int]) -> tuple[str, str] | None:
    """An error about steps[i]... as the form's step field (its number as the form shows it)."""
    found = _STEP.match(exc.field or "")
    if found is None or int(found.group(1)) >= len(where):
        return None
    index = where[int(found.group(1))]
    name, label = STEP_LABELS.get(found.group(2) or "", ("targets", "Step"))
    if exc.field == found.group(0) and found.group(2) == "targets":
        # The engine's message spells the JSON shape; the form's boxes make that shape.
        limit = policies.MAX_TARGETS
        return f"step-{index}-targets", f"Step {index + 1}: Who: tick at least one to page (at most {limit})"
    message = exc.message
    if message.startswith(exc.field or "\0"):
        message = message[len(exc.field or "") :]
    elif message.startswith(found.group(0)):
        message = message[len(found.group(0)) :]
    return f"step-{index}-{name}", f"Step {index + 1}: {label}{message}"


async def _options(conn: db.Connection, user_id: uuid.UUID, team_id: uuid.UUID) -> list[dict[str, str]]:
    members = await list_members(conn, user_id, team_id)
    records, _ = await crud.list_schedules(conn, user_id, limit=200, offset=0)
    options = [
        {"value": f"schedule:{r.id}", "label": f"On call in {r.name}", "kind": "Schedule"}
        for r in records
        if r.team_id == team_id
    ]
    options += [
        {"value": f"user:{m['user_id']}", "label": m["name"] or m["email"], "kind": "Person"} for m in members
    ]
    return options


async def _form_page(
    request: web.Request,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    policy: Policy | None = None,
    status: int = 200,
) -> web.Response:
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        teams = [t for t in await list_teams(conn, user.id) if Role(t["role"]).at_least(Role.ADMIN)]
        if policy is not None:
            team_id: uuid.UUID | None = policy.team_id
        else:
            chosen = next((t for t in teams if str(t["id"]) == values.get("team")), default_team(teams))
            team_id = chosen["id"] if chosen else None
        options = await _options(conn, user.id, team_id) if team_id else []
    known = {o["value"] for o in options}
    for step in values.get("steps", []):  # channel targets (and anything else) the policy has
        for value in step["targets"]:
            if value not in known:
                channel = value.split(":", 2)
                label = (
                    f"{channel[1]} to {channel[2]}"
                    if channel[0] == "channel" and len(channel) == 3
                    else value
                )
                options.append({"value": value, "label": label, "kind": "Channel"})
                known.add(value)
    context = {
        "section": "oncall",
        "values": values,
        "errors": errors,
        "policy": {"id": str(policy.id), "name": policy.name} if policy else None,
        "teams": [{"id": str(t["id"]), "name": "Personal" if t["personal"] else t["name"]} for t in teams],
        "team": str(team_id) if team_id else "",
        "options": options,
        "max_repeat": policies.MAX_REPEAT,
    }
    return render(request, "policy_form.html", context, status=status)


def _values(given: dict[str, str], targets: dict[str, list[str]], count: int, more: bool) -> dict[str, Any]:
    steps = [
        {"delay": given.get(f"step-{i}-delay", ""), "targets": targets.get(f"step-{i}-target", [])}
        for i in range(count)
        if not given.get(f"step-{i}-remove")
    ]
    if more or not steps:
        steps.append({"delay": "", "targets": []})
    return {**given, "steps": steps}


async def _posted(request: web.Request) -> tuple[dict[str, str], dict[str, list[str]], int]:
    given = await form(request)
    try:
        count = min(int(given.get("step_count", "0")), policies.MAX_STEPS + 1)
    except ValueError:
        count = 0
    data = await request.post()
    targets = {
        f"step-{i}-target": [v for v in data.getall(f"step-{i}-target", []) if isinstance(v, str)]
        for i in range(count)
    }
    return given, targets, count


def _input(given: dict[str, str], steps: list[StepInput], *, new: bool) -> PolicyInput:
    return PolicyInput(
        name=given.get("name", ""),
        description=given.get("description") or None,
        team_id=(given.get("team") or UNSET) if new else UNSET,
        repeat=number(given.get("repeat", "")) if given.get("repeat", "").strip() else 0,
        steps=steps,
    )


def _error(exc: ValidationError, where: list[int]) -> dict[str, str]:
    found = step_error(exc, where)
    if found is None:
        found = at_field(exc, FIELDS)
    return {found[0]: found[1]}


@routes.get("/on-call/policies/new", name="dashboard.policy_new")
async def new_policy(request: web.Request) -> web.Response:
    values = {"team": request.query.get("team", ""), "repeat": "0", "steps": [{"delay": "5", "targets": []}]}
    return await _form_page(request, values, {})


@routes.post("/on-call/policies/new", name="dashboard.policy_create")
async def create_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    given, targets, count = await _posted(request)
    more = bool(given.get("add_step") or given.get("change_team"))
    if more:
        return await _form_page(request, _values(given, targets, count, bool(given.get("add_step"))), {})
    steps, where = steps_of(given, targets, count)
    available = request.app[AVAILABLE_TYPES]
    try:
        async with request.app[POOL].acquire() as conn:
            policy = await policies.create_policy(
                conn,
                user.id,
                _input(given, steps, new=True),
                now=request.app[CLOCK].now(),
                available=available,
            )
    except ValidationError as exc:
        values = _values(given, targets, count, False)
        return await _form_page(request, values, _error(exc, where), status=400)
    return see_other(f"/on-call/policies/{policy.id}?saved=1")


def _policy_values(policy: Policy) -> dict[str, Any]:
    delay = lambda d: str(int(d)) if float(d).is_integer() else str(d)  # noqa: E731
    return {
        "name": policy.name,
        "description": policy.description or "",
        "repeat": str(policy.repeat),
        "steps": [
            {"delay": delay(s.delay_minutes), "targets": [_target_value(t) for t in s.targets]}
            for s in policy.steps
        ],
    }


@routes.get("/on-call/policies/{id}", name="dashboard.policy")
async def policy_page(request: web.Request) -> web.Response:
    user = current_user(request)
    policy_id = policies.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        policy = await policies.get_policy(conn, user.id, policy_id)
        team = next((t for t in await list_teams(conn, user.id) if t["id"] == policy.team_id), None)
        options = await _options(conn, user.id, policy.team_id)
    values = _policy_values(policy)
    if team is None or not Role(team["role"]).at_least(Role.ADMIN):
        # Read-only: the engine refuses a non-admin's change anyway; no form to offer one.
        labels = {o["value"]: o["label"] for o in options}
        steps = [
            {
                "delay": step["delay"],
                "targets": [labels.get(t, t.replace(":", " ", 2)) for t in step["targets"]],
            }
            for step in values["steps"]
        ]
        readable = {**values, "steps": steps, "repeat": policy.repeat}
        return render(request, "policy_view.html", {"section": "oncall", "policy": readable})
    values["saved"] = request.query.get("saved") == "1"
    return await _form_page(request, values, {}, policy=policy)


@routes.post("/on-call/policies/{id}", name="dashboard.policy_update")
async def update_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    policy_id = policies.parse_id(request.match_info["id"])
    given, targets, count = await _posted(request)
    async with request.app[POOL].acquire() as conn:
        current = await policies.get_policy(conn, user.id, policy_id)
    if given.get("add_step"):
        return await _form_page(request, _values(given, targets, count, True), {}, policy=current)
    steps, where = steps_of(given, targets, count)
    available = request.app[AVAILABLE_TYPES]
    try:
        async with request.app[POOL].acquire() as conn:
            await policies.update_policy(
                conn,
                user.id,
                policy_id,
                _input(given, steps, new=False),
                now=request.app[CLOCK].now(),
                available=available,
            )
    except ValidationError as exc:
        values = _values(given, targets, count, False)
        return await _form_page(request, values, _error(exc, where), policy=current, status=400)
    return see_other(f"/on-call/policies/{policy_id}?saved=1")


@routes.post("/on-call/policies/{id}/delete", name="dashboard.policy_delete")
async def delete_policy(request: web.Request) -> web.Response:
    user = current_user(request)
    policy_id = policies.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await policies.delete_policy(conn, user.id, policy_id)
    return see_other("/on-call")
