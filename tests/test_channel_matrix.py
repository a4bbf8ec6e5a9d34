"""MATRIX: the client-server API's send, against a local homeserver that keeps transaction ids as
the spec says (a repeated txnId answers the event already sent), with its errcode answers and
429 M_LIMIT_EXCEEDED, and a page end to end through a worker whose retry reuses the txnId."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from engine.channels.base import ActionLinks, DeliveryError
from engine.channels.formats import TargetError
from engine.channels.matrix import MatrixChannel, validate_room_id
from engine.channels.registry import configured_types
from engine.settings import MatrixSettings, Settings
from tests.support.channels import alert
from tests.support.chat import chat_settings, page_through_worker, serve

TOKEN = "syt_bW9ub2R1dHk_XyZaBcDeFgHiJkLmNoP_0a1b2c"
ROOM = "!OpsRoom123:example.org"


@dataclass
class FakeHomeserver:
    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # what the room shows, in order
    txns: dict[str, str] = field(default_factory=dict)  # txnId -> event id (one access token here)
    puts: list[str] = field(default_factory=list)  # the txnId of every PUT
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lose_next_answer: bool = False  # send the event, then answer 502 as if the answer got lost

    async def send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            answer = {
                "errcode": "M_UNKNOWN_TOKEN",
                "error": "Invalid access token passed.",
                "soft_logout": False,
            }
            return web.json_response(answer, status=401)
        txn = request.match_info["txn"]
        self.puts.append(txn)
        if self.script:
            status, answer = self.script.pop(0)
            return web.json_response(answer, status=status)
        if request.match_info["room"] != ROOM:
            answer = {"errcode": "M_FORBIDDEN", "error": "User @monoduty:example.org not in room"}
            return web.json_response(answer, status=403)
        if txn not in self.txns:  # the spec: the same txnId is the same event
            self.events.append(json.loads(await request.read()))
            self.txns[txn] = f"$event{len(self.events)}"
        if self.lose_next_answer:
            self.lose_next_answer = False
            return web.json_response({"errcode": "M_UNKNOWN", "error": "proxy timeout"}, status=502)
        return web.json_response({"event_id": self.txns[txn]})


@pytest.fixture
async def homeserver() -> AsyncIterator[FakeHomeserver]:
    fake = FakeHomeserver()
    app = web.Application()
    app.router.add_put("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", fake.send)
    async with serve(app) as url:
        fake.url = url
        yield fake


def channel(session: aiohttp.ClientSession, url: str, token: str = TOKEN) -> MatrixChannel:
    return MatrixChannel(MatrixSettings(url, token), session, 5.0)


def page(**changes: object) -> Any:
    base = "https://pager.example/a/t.s"
    actions = ActionLinks("t.s", base, f"{base}?action=acknowledge", f"{base}?action=resolve")
    fields = {"number": 42, "incident_url": "https://pager.example/incidents/7", "actions": actions}
    return alert(**{**fields, "delivery_id": "3f0c9a4e-5b1d-4c2e-9f7a-0d8e6b5a4c3b", **changes})


async def test_an_html_message_with_the_delivery_as_txn_id(
    homeserver: FakeHomeserver, http_session: aiohttp.ClientSession
) -> None:
    message = page()
    receipt = await channel(http_session, homeserver.url).send(message, ROOM)

    assert homeserver.puts == [message.delivery_id] and receipt.provider_id == "$event1"
    [event] = homeserver.events
    assert event["msgtype"] == "m.text" and event["format"] == "org.matrix.custom.html"
    assert event["body"].startswith('[CRITICAL] #42 Replica "db-2" <lagging> & failing\n')
    assert event["formatted_body"].startswith(
        "<strong>[CRITICAL] #42 Replica &quot;db-2&quot; &lt;lagging&gt; &amp; failing</strong><br>"
    )
    assert (
        '<a href="https://pager.example/a/t.s?action=acknowledge">Acknowledge</a>' in event["formatted_body"]
    )
    assert "Acknowledge: https://pager.example/a/t.s?action=acknowledge" in event["body"]


async def test_an_alert_cannot_notify_the_room_or_add_markup(
    homeserver: FakeHomeserver, http_session: aiohttp.ClientSession
) -> None:
    hostile = '@room <a href="https://evil.example">click</a> <img src=x onerror=alert(1)>'
    await channel(http_session, homeserver.url).send(page(title=hostile, body=hostile), ROOM)

    [event] = homeserver.events
    # An event with m.mentions is judged by it alone: "@room" in the body notifies no one.
    assert event["m.mentions"] == {}
    html = event["formatted_body"]
    assert "<img" not in html and 'href="https://evil.example"' not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_a_retry_after_a_lost_answer_posts_nothing_twice(
    homeserver: FakeHomeserver, http_session: aiohttp.ClientSession
) -> None:
    homeserver.lose_next_answer = True
    message = page()

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session, homeserver.url).send(message, ROOM)
    assert not caught.value.permanent
    receipt = await channel(http_session, homeserver.url).send(message, ROOM)

    assert homeserver.puts == [message.delivery_id] * 2
    assert len(homeserver.events) == 1 and receipt.provider_id == "$event1"


@pytest.mark.parametrize(
    ("room", "script", "permanent", "retry_after", "says"),
    [
        ("!Other:example.org", [], True, None,
         "matrix answered 403: User @monoduty:example.org not in room (code M_FORBIDDEN)"),
        (ROOM, [(429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 1500})],
         False, 1.5, "matrix answered 429: Too many requests (code M_LIMIT_EXCEEDED)"),
        (ROOM, [(400, {"errcode": "M_BAD_JSON", "error": "Content not JSON."})], True, None,
         "matrix answered 400: Content not JSON. (code M_BAD_JSON)"),
        (ROOM, [(503, {"errcode": "M_UNKNOWN", "error": "Overloaded"})], False, None, "matrix answered 503"),
    ],
)  # fmt: skip
async def test_homeserver_answers_are_classified(
    homeserver: FakeHomeserver,
    http_session: aiohttp.ClientSession,
    room: str,
    script: list[tuple[int, dict[str, Any]]],
    permanent: bool,
    retry_after: float | None,
    says: str,
) -> None:
    homeserver.script = list(script)

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session, homeserver.url).send(page(), room)

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert str(caught.value).startswith(says)


async def test_the_access_token_never_shows_in_errors_or_logs(
    homeserver: FakeHomeserver, http_session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    homeserver.script = [(400, {"errcode": "M_UNKNOWN", "error": f"token {TOKEN} refused"})]
    errors = []
    for token in (TOKEN, TOKEN + "x"):
        with pytest.raises(DeliveryError) as caught:
            await channel(http_session, homeserver.url, token).send(page(), ROOM)
        errors.append(str(caught.value))

    assert errors[0] == "matrix answered 400: token *** refused (code M_UNKNOWN)"
    assert errors[1] == "matrix answered 401: Invalid access token passed. (code M_UNKNOWN_TOKEN)"
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("raw", ["!abc:matrix.org", " !x/Y+z=:chat.example.com:8448 "])
def test_valid_room_ids(raw: str) -> None:
    assert validate_room_id(raw) == raw.strip()


@pytest.mark.parametrize("raw", ["#ops:matrix.org", "!nohost", "abc:matrix.org", "!a b:matrix.org", ""])
def test_invalid_room_ids(raw: str) -> None:
    with pytest.raises(TargetError, match="Matrix room id"):
        validate_room_id(raw, field="target")


def test_matrix_needs_a_homeserver_and_a_token() -> None:
    assert "MATRIX" not in configured_types(Settings())
    env = {
        "MONODUTY_MATRIX_HOMESERVER_URL": "https://matrix.example.org/",
        "MONODUTY_MATRIX_ACCESS_TOKEN": TOKEN,
    }
    settings = Settings.from_env(env)
    assert settings.matrix == MatrixSettings("https://matrix.example.org", TOKEN)
    assert "MATRIX" in configured_types(settings) and TOKEN not in repr(settings)


async def test_a_page_reaches_a_room_through_a_worker_once_despite_a_lost_answer(
    homeserver: FakeHomeserver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    homeserver.lose_next_answer = True
    settings = chat_settings(provider_settings, matrix=MatrixSettings(homeserver.url, TOKEN))

    paged = await page_through_worker(settings, pool, "MATRIX", "matrix", ROOM)

    [delivery] = paged.deliveries
    assert (delivery["status"], delivery["attempts"], delivery["provider_id"]) == ("delivered", 2, "$event1")
    assert homeserver.puts == [str(delivery["id"])] * 2  # txnId = the delivery id, on the retry too
    [event] = homeserver.events
    assert "DB down" in event["body"] and "http://monoduty.test/a/" in event["formatted_body"]
