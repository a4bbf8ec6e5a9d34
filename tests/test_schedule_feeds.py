"""Calendar feeds over HTTP: a schedule's and a user's shifts at a signed URL that needs no
credentials (calendar clients send none), parsed back with icalendar; a wrong or rotated token
finds nothing, and the token never reaches a log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta

import asyncpg
import icalendar
import pytest
from aiohttp.test_utils import TestClient

from engine.oncall import feeds, schedules, store
from engine.oncall.crud import parse_id
from engine.oncall.validation import time_zone
from engine.settings import Settings
from tests.support.factories import Account, assert_error, make_client, new_account
from tests.support.schedules import create_schedule, rotation
from tests.support.teams import add_member, new_team

TWELVE_HOURS = {"shiftLength": 12, "shiftUnit": "hours", "start": "2025-01-06T09:00"}


def path_of(url: str) -> str:
    return url.removeprefix("http://monoduty.test")


def events(body: bytes) -> list[icalendar.Event]:
    return list(icalendar.Calendar.from_ical(body).walk("VEVENT"))


async def fetch(client: TestClient, url: str) -> bytes:
    resp = await client.get(path_of(url))  # no Authorization: the URL is the credential
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/calendar"
    return await resp.read()


async def test_a_schedules_feed_gives_its_shifts_in_its_zone(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    mate = await new_account(pool)
    team = await new_team(client, account, members={"responder": mate})
    ids = [str(account.user.id), str(mate.user.id)]
    made = await create_schedule(
        client,
        account,
        teamId=team["id"],
        timeZone="Europe/Berlin",
        rotations=[rotation(ids, **TWELVE_HOURS)],
    )
    before = datetime.now(UTC)
    body = await fetch(client, made["ical_url"])
    calendar = icalendar.Calendar.from_ical(body)
    assert calendar["X-WR-CALNAME"] == "Ops: on call"
    assert [str(z["TZID"]) for z in calendar.walk("VTIMEZONE")] == ["Europe/Berlin"]
    async with pool.acquire() as conn:
        definition = await store.load_schedule(conn, parse_id(made["id"]))
    assert definition is not None
    start, end = feeds.feed_range(before, time_zone("Europe/Berlin"))
    expected = schedules.shifts(definition, start, end)
    found = [(e.decoded("DTSTART").astimezone(UTC), e.decoded("DTEND").astimezone(UTC)) for e in events(body)]
    # From local midnight a week back to local midnight 60 days on.
    berlin = time_zone("Europe/Berlin")
    today = before.astimezone(berlin).date()
    assert start.astimezone(berlin) == datetime.combine(today - timedelta(days=7), time(0), berlin)
    assert end.astimezone(berlin) == datetime.combine(today + timedelta(days=60), time(0), berlin)
    assert found == [(s.start, s.end) for s in expected]
    assert (found[0][0], found[-1][1]) == (start, end)
    assert len(found) > 100
    who = {str(e["SUMMARY"]) for e in events(body)}
    assert who == {f"On call: {account.user.email}", f"On call: {mate.user.email}"}
    # Fetched again, every event keeps its UID (a calendar updates rather than duplicates).
    again = await fetch(client, made["ical_url"])
    assert [str(e["UID"]) for e in events(again)] == [str(e["UID"]) for e in events(body)]


async def test_a_users_feed_has_their_shifts_of_every_schedule_of_their_teams(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    me, other = account, await new_account(pool)
    shared = await new_team(client, other, name="Shared")
    await add_member(client, other, shared["id"], me, "viewer")
    ids = [str(me.user.id), str(other.user.id)]
    mine = await create_schedule(client, me, name="Primary", rotations=[rotation([ids[0]], **TWELVE_HOURS)])
    theirs = await create_schedule(
        client, other, name="Secondary", teamId=shared["id"], rotations=[rotation(ids, **TWELVE_HOURS)]
    )
    resp = await client.get("/api/me/ical", headers=me.headers)
    assert resp.status == 200, await resp.text()
    url = (await resp.json())["ical_url"]
    found = events(await fetch(client, url))
    summaries = [str(e["SUMMARY"]) for e in found]
    assert set(summaries) == {f"On call: {me.user.email} (Primary)", f"On call: {me.user.email} (Secondary)"}
    # Both schedules hand off at the same instants: their events still have UIDs of their own.
    assert len({str(e["UID"]) for e in found}) == len(found)
    # The other schedule's shifts of this user only: every other 12 hours.
    secondary = [e for e in found if "Secondary" in str(e["SUMMARY"])]
    async with pool.acquire() as conn:
        definition = await store.load_schedule(conn, parse_id(theirs["id"]))
    assert definition is not None
    for event in secondary[1:-1]:
        assert schedules.on_call(definition, event.decoded("DTSTART")) == [ids[0]]
    assert mine["id"] != theirs["id"]


async def test_a_wrong_or_rotated_token_finds_nothing(client: TestClient, account: Account) -> None:
    made = await create_schedule(client, account, rotations=[rotation([str(account.user.id)])])
    old = made["ical_url"]
    token = path_of(old).removeprefix("/ical/").removesuffix(".ics")
    wrong = [
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # the signature changed
        "u" + token[1:],  # a schedule's token as a user's
        token.replace(".0.", ".1."),  # another version, same signature
        "s" + "0" * 32 + ".0." + token.rsplit(".", 1)[1],
        "not-a-token",
    ]
    for bad in wrong:
        resp = await client.get(f"/ical/{bad}.ics")
        assert resp.status == 404, bad
        assert_error(await resp.json(), "FEED_NOT_FOUND")
    resp = await client.post(f"/api/schedules/{made['id']}/ical/rotate", headers=account.headers)
    assert resp.status == 200, await resp.text()
    new = (await resp.json())["ical_url"]
    assert new != old
    assert (await client.get(path_of(old))).status == 404
    await fetch(client, new)
    read = await (await client.get(f"/api/schedules/{made['id']}", headers=account.headers)).json()
    assert read["schedule"]["ical_url"] == new
    # The user's own feed rotates the same way.
    first = (await (await client.get("/api/me/ical", headers=account.headers)).json())["ical_url"]
    await fetch(client, first)
    rotated = await (await client.post("/api/me/ical/rotate", headers=account.headers)).json()
    assert (await client.get(path_of(first))).status == 404
    await fetch(client, rotated["ical_url"])
    # A deleted schedule's feed is gone with it.
    await client.delete(f"/api/schedules/{made['id']}", headers=account.headers)
    assert (await client.get(path_of(new))).status == 404


async def test_the_token_never_reaches_a_log_line(
    client: TestClient, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    made = await create_schedule(client, account, rotations=[rotation([str(account.user.id)])])
    token = path_of(made["ical_url"]).removeprefix("/ical/").removesuffix(".ics")
    with caplog.at_level(logging.DEBUG):
        await fetch(client, made["ical_url"])
        await client.get(f"/ical/{token}x.ics")
    assert caplog.records and "/ical/{token}.ics" in caplog.text
    assert token not in caplog.text and token[-12:] not in caplog.text


async def test_without_a_secret_key_there_are_no_feeds(settings: Settings, account: Account) -> None:
    signed = await make_client(settings)
    try:
        made = await create_schedule(signed, account, rotations=[rotation([str(account.user.id)])])
    finally:
        await signed.close()
    client = await make_client(settings.with_(secret_key=None))
    try:
        read = await (await client.get(f"/api/schedules/{made['id']}", headers=account.headers)).json()
        assert read["schedule"]["ical_url"] is None
        for method, path in (("GET", "/api/me/ical"), ("POST", "/api/me/ical/rotate")):
            resp = await client.request(method, path, headers=account.headers)
            assert resp.status == 503
            assert_error(await resp.json(), "FEEDS_NOT_CONFIGURED")
        assert (await client.get(path_of(made["ical_url"]))).status == 404
    finally:
        await client.close()
