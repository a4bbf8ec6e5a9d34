"""Schedules through the API: create, read, change and delete with inline rotations; errors name
the field as the client wrote it; on-call and shifts answer what the engine computes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.oncall import schedules, store
from engine.oncall.crud import parse_id
from tests.support.factories import Account, assert_error, new_account
from tests.support.schedules import create_schedule, rotation, utc
from tests.support.teams import add_member, new_team, personal_team

BUSINESS_HOURS = {"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}


async def test_a_schedule_is_made_read_changed_and_deleted(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    me = str(account.user.id)
    mate = await new_account(pool)
    team = await new_team(client, account, members={"responder": mate})
    made = await create_schedule(
        client,
        account,
        teamId=team["id"],
        description="the database people",
        rotations=[
            rotation([me, str(mate.user.id)]),
            rotation([me], shiftUnit="days", activeHours=BUSINESS_HOURS),
        ],
    )
    assert (made["team_id"], made["name"], made["time_zone"], made["role"]) == (
        team["id"],
        "Ops",
        "America/New_York",
        "owner",
    )
    first, second = made["rotations"]
    assert first | {"id": None} == {
        "id": None,
        "name": "primary",
        "participants": [me, str(mate.user.id)],
        "shift_length": 1,
        "shift_unit": "weeks",
        "start": "2025-01-06T09:00:00",
        "active_hours": None,
    }
    assert second["active_hours"] == BUSINESS_HOURS
    base = f"/api/schedules/{made['id']}"
    read = await (await client.get(base, headers=mate.headers)).json()
    assert read["schedule"] | {"role": "owner"} == made
    # Without teamId a schedule goes to the caller's personal team.
    own = await create_schedule(client, account, name="Mine")
    assert own["team_id"] == (await personal_team(client, account))["id"] and own["rotations"] == []
    listing = await (await client.get("/api/schedules", headers=account.headers)).json()
    assert [s["id"] for s in listing["schedules"]] == [made["id"], own["id"]] and listing["total"] == 2
    mates = await (await client.get("/api/schedules", headers=mate.headers)).json()
    assert [s["id"] for s in mates["schedules"]] == [made["id"]]

    # PATCH changes what it names; rotations replace the list, in the order given.
    resp = await client.patch(
        base, json={"timeZone": "Europe/Berlin", "rotations": [rotation([str(mate.user.id)], name="solo")]},
        headers=account.headers,
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    changed = (await resp.json())["schedule"]
    assert (changed["name"], changed["description"], changed["time_zone"]) == (
        "Ops",
        "the database people",
        "Europe/Berlin",
    )
    assert [(r["name"], r["participants"]) for r in changed["rotations"]] == [("solo", [str(mate.user.id)])]
    async with pool.acquire() as conn:
        loaded = await store.load_schedule(conn, parse_id(made["id"]))
    assert loaded is not None and loaded.time_zone == "Europe/Berlin" and len(loaded.rotations) == 1

    assert (await client.delete(base, headers=account.headers)).status == 200
    gone = await client.get(base, headers=account.headers)
    assert gone.status == 404
    assert_error(await gone.json(), "SCHEDULE_NOT_FOUND")


async def test_bad_input_is_a_400_naming_the_field_as_sent(
    client: TestClient, account: Account, other_account: Account
) -> None:
    me = str(account.user.id)

    def body(*rotations: object, **fields: object) -> dict[str, Any]:
        return {"name": "x", "timeZone": "UTC", "rotations": list(rotations), **fields}

    def mine(**changes: object) -> dict[str, Any]:
        return body(rotation([me], **changes))

    outsider = str(other_account.user.id)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"timeZone": "UTC"}, "name"),
        ({"name": "x"}, "timeZone"),
        (body(timeZone="Mars/Olympus"), "timeZone"),
        (body(rotations={}), "rotations"),
        (body("weekly"), "rotations[0]"),
        (body(rotation([])), "rotations[0].participants"),
        (body(rotation(["bob"])), "rotations[0].participants[0]"),
        (body(rotation([me]), rotation([me, outsider])), "rotations[1].participants[1]"),  # not in the team
        (mine(shiftLength=0), "rotations[0].shiftLength"),
        (mine(shiftLength="1"), "rotations[0].shiftLength"),
        (mine(shiftUnit="months"), "rotations[0].shiftUnit"),
        (mine(start="2025-01-06T09:00Z"), "rotations[0].start"),
        (mine(start="Monday"), "rotations[0].start"),
        (mine(activeHours={**BUSINESS_HOURS, "weekdays": [7]}), "rotations[0].activeHours.weekdays"),
        (mine(activeHours={**BUSINESS_HOURS, "end": "09:00"}), "rotations[0].activeHours.end"),
        (mine(activeHours={**BUSINESS_HOURS, "start": "9am"}), "rotations[0].activeHours.start"),
        (mine(activeHours={**BUSINESS_HOURS, "from": "09:00"}), "rotations[0].activeHours.from"),
        (mine(shift_length=1), "rotations[0].shift_length"),
        (body(teamId="nope"), "teamId"),
        (body(colour="red"), "colour"),
    ]
    for body, field in cases:
        resp = await client.post("/api/schedules", json=body, headers=account.headers)
        assert resp.status == 400, (body, await resp.text())
        data = await resp.json()
        assert_error(data, "VALIDATION_ERROR")
        assert data["error"].startswith(f"{field} ") or data["error"] == f"unknown field: {field}", (
            field,
            data,
        )
    assert (await (await client.get("/api/schedules", headers=account.headers)).json())["total"] == 0


async def test_on_call_and_shifts_answer_what_the_engine_computes(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    """A weekly base layer of three, a business-hours layer and an override, in New York across
    the March DST change (the scenario of tests/support/schedules.py, with real users)."""
    alice, bob, carol, dave, erin, frank = [account, *[await new_account(pool) for _ in range(5)]]
    team = await new_team(client, account, members={})
    for person in (bob, carol, dave, erin, frank):
        await add_member(client, account, team["id"], person, "responder")
    ids = [str(a.user.id) for a in (alice, bob, carol, dave, erin, frank)]
    made = await create_schedule(
        client,
        account,
        teamId=team["id"],
        rotations=[rotation(ids[:3]), rotation(ids[3:5], shiftUnit="days", activeHours=BUSINESS_HOURS)],
    )
    base = f"/api/schedules/{made['id']}"
    resp = await client.post(
        f"{base}/overrides",
        json={"userId": ids[5], "start": "2025-03-11T12:00:00-04:00", "end": "2025-03-11T18:00:00-04:00"},
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    async with pool.acquire() as conn:
        definition = await store.load_schedule(conn, parse_id(made["id"]))
    assert definition is not None

    start, end = utc("2025-03-07 00:00"), utc("2025-03-14 00:00")
    resp = await client.get(
        f"{base}/shifts", params={"from": start.isoformat(), "to": end.isoformat()}, headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    answered = (await resp.json())["shifts"]
    expected = schedules.shifts(definition, start, end)
    assert [(s["user"]["id"], s["start"], s["end"]) for s in answered] == [
        (s.user, _wire(s.start), _wire(s.end)) for s in expected
    ]
    assert len(expected) > 8 and set(ids[3:]) < {s["user"]["id"] for s in answered}
    frank_shift = next(s for s in answered if s["user"]["id"] == ids[5])
    assert frank_shift["sources"] == [
        {"type": "override", "id": frank_shift["sources"][0]["id"], "name": None}
    ]
    assert frank_shift["user"]["email"] == frank.user.email

    for at in (
        "2025-03-07 13:59",
        "2025-03-09 06:59",
        "2025-03-09 07:00",
        "2025-03-10 13:00",
        "2025-03-11 17:00",
        "2025-03-11 22:00",
    ):
        resp = await client.get(
            f"{base}/on-call", params={"at": utc(at).isoformat()}, headers=account.headers
        )
        assert resp.status == 200, await resp.text()
        on_call = (await resp.json())["on_call"]
        assert [o["user"]["id"] for o in on_call] == schedules.on_call(definition, utc(at)), at
        # "until": the end of that user's shift, as the shifts say.
        (shift,) = [s for s in schedules.shifts(definition, utc(at), utc(at) + timedelta(days=30))][:1]
        assert on_call[0]["until"] == _wire(shift.end), at
    # Default: now. Every user is somebody of the base layer from 2025 on.
    now = await (await client.get(f"{base}/on-call", headers=account.headers)).json()
    assert len(now["on_call"]) == 1 and now["on_call"][0]["user"]["id"] in ids


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2025-01-01T00:00:00Z", "to": "2025-04-02T00:00:00Z"}, "to"),  # 91 days
        ({"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "to"),
        ({"from": "2025-01-01T00:00:00", "to": "2025-01-02T00:00:00Z"}, "from"),  # no offset
        ({"from": "yesterday"}, "from"),
    ],
)
async def test_a_shifts_range_past_90_days_or_malformed_is_a_400_naming_it(
    client: TestClient, account: Account, params: dict[str, str], field: str
) -> None:
    made = await create_schedule(client, account, rotations=[rotation([str(account.user.id)])])
    resp = await client.get(f"/api/schedules/{made['id']}/shifts", params=params, headers=account.headers)
    assert resp.status == 400
    data = await resp.json()
    assert_error(data, "VALIDATION_ERROR")
    assert data["error"].startswith(f"{field} "), data
    ok = await client.get(
        f"/api/schedules/{made['id']}/shifts",
        params={"from": "2025-01-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"},  # exactly 90 days
        headers=account.headers,
    )
    assert ok.status == 200


def _wire(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
