"""Escalation policies through the API: ``step(delay, *accounts)`` is a step paging those users,
``new_policy(client, admin, *steps, repeat=0, team_id=None)`` makes a policy and returns it as the
API answers; ``policy_webhook(client, owner, policy)`` a webhook that escalates under it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.factories import WEBHOOK, Account, create


def step(delay_minutes: float, *people: Account) -> dict[str, Any]:
    targets = [{"type": "user", "id": str(p.user.id)} for p in people]
    return {"delayMinutes": delay_minutes, "targets": targets}


async def new_policy(
    client: TestClient,
    admin: Account,
    *steps: dict[str, Any],
    repeat: int = 0,
    team_id: str | None = None,
    name: str = "Primary on call",
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "repeat": repeat, "steps": list(steps)}
    if team_id is not None:
        body["teamId"] = team_id
    resp = await client.post("/api/escalation-policies", json=body, headers=admin.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["escalation_policy"]


async def policy_webhook(client: TestClient, owner: Account, policy: dict[str, Any]) -> dict[str, Any]:
    return await create(client, owner, {**WEBHOOK, "escalationPolicyId": policy["id"]})
