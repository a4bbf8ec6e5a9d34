"""SLACK: incoming webhooks, against a local server answering as Slack documents (200 ok, the
plain-text error codes, 429 with Retry-After), and a page end to end through a worker."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from engine.channels.base import ActionLinks, DeliveryError
from engine.channels.registry import configured_types
from engine.channels.slack import SlackChannel
from engine.settings import Settings
from tests.support.channels import alert
from tests.support.chat import chat_settings, page_through_worker, serve
from tests.support.factories import make_client

HOOK = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class FakeSlack:
    """Slack's incoming webhooks: ``POST /services/T.../B.../<secret>``."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)  # status, body, headers

    async def handle(self, request: web.Request) -> web.Response:
        if request.path != HOOK:
            # A wrong secret of a known workspace; a webhook that was removed.
            if request.match_info["team"] == "T0001":
                return web.Response(status=403, text="invalid_token")
            return web.Response(status=404, text="no_service")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return web.Response(status=400, text="no_text")
        if self.script:
            status, text, headers = self.script.pop(0)
            return web.Response(status=status, text=text, headers=headers)
        self.posts.append(body)
        return web.Response(text="ok")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post("/services/{team}/{bot}/{secret}", fake.handle)
    async with serve(app) as url:
        fake.url = url
        yield fake


def channel(session: aiohttp.ClientSession) -> SlackChannel:
    return SlackChannel(None, session, 5.0)


def page(**changes: object) -> Any:
    base = "https://pager.example/a/t.s"
    actions = ActionLinks("t.s", base, f"{base}?action=acknowledge", f"{base}?action=resolve")
    return alert(
        **{"number": 42, "incident_url": "https://pager.example/incidents/7", "actions": actions, **changes}
    )


async def test_blocks_carry_the_incident_and_the_links(
    slack: FakeSlack, http_session: aiohttp.ClientSession
) -> None:
    receipt = await channel(http_session).send(page(), slack.url + HOOK)

    [post] = slack.posts
    assert receipt.reply == "ok"
    header, body, facts, links = post["blocks"]
    assert header["type"] == "header"
    assert header["text"]["text"] == ':red_circle: [CRITICAL] #42 Replica "db-2" <lagging> & failing'
    assert body["text"]["text"] == "Replication lag 95s on db-2.\nPrimary is fine."
    assert [f["text"] for f in facts["fields"]] == [
        "*Incident*\n#42", "*Severity*\nCRITICAL", "*Source*\nprometheus", "*Webhook*\nprod-db"
    ]  # fmt: skip
    assert links["elements"][0]["text"] == (
        "<https://pager.example/a/t.s?action=acknowledge|Acknowledge> · "
        "<https://pager.example/a/t.s?action=resolve|Resolve> · "
        "<https://pager.example/incidents/7|Open incident>"
    )
    # Mattermost and Rocket.Chat read text alone: all of it is there, escaped for mrkdwn.
    assert post["text"].startswith(
        '*:red_circle: [CRITICAL] #42 Replica "db-2" &lt;lagging&gt; &amp; failing*'
    )
    assert "<https://pager.example/a/t.s?action=acknowledge|Acknowledge>" in post["text"]


async def test_a_url_cannot_break_out_of_its_link(
    slack: FakeSlack, http_session: aiohttp.ClientSession
) -> None:
    await channel(http_session).send(
        page(actions=None, incident_url="https://x.example/a|b>c"), slack.url + HOOK
    )

    assert "<https://x.example/a%7Cb%3Ec|Open incident>" in slack.posts[0]["text"]


async def test_an_alert_cannot_mention_anyone_or_fake_a_link(
    slack: FakeSlack, http_session: aiohttp.ClientSession
) -> None:
    """Slack's mentions and links are <...> (escaped: they show as typed); a bare @channel pings at
    the Slack-compatible servers that read mentions out of the text (Mattermost, Rocket.Chat)."""
    hostile = "<!channel> <!here> <@U123> <http://evil.example|click> @channel @all & co"
    await channel(http_session).send(page(title=hostile, body=hostile, source=hostile), slack.url + HOOK)

    [post] = slack.posts
    shown = [post["text"]] + [json.dumps(block) for block in post["blocks"][1:]]
    for text in shown:
        for raw in ("<!channel>", "<!here>", "<@U123>", "<http://evil.example", "@channel", "@all"):
            assert raw not in text
    escaped = "&lt;!channel&gt; &lt;!here&gt; &lt;@\u200bU123&gt; &lt;http://evil.example|click&gt;"
    assert escaped in post["text"]
    assert "@\u200bchannel @\u200ball &amp; co" in post["text"]


@pytest.mark.parametrize(
    ("path", "script", "permanent", "retry_after", "says"),
    [
        ("/services/T0001/B0001/wrong", [], True, None, "slack answered 403: invalid_token"),
        ("/services/T0009/B0001/gone", [], True, None, "slack answered 404: no_service"),
        (HOOK, [(404, "channel_not_found", {})], True, None, "slack answered 404: channel_not_found"),
        (HOOK, [(410, "channel_is_archived", {})], True, None, "slack answered 410: channel_is_archived"),
        (
            HOOK,
            [(429, "rate_limited", {"Retry-After": "30"})],
            False,
            30.0,
            "slack answered 429: rate_limited",
        ),
        (HOOK, [(500, "rollup_error", {})], False, None, "slack answered 500: rollup_error"),
        # An older Slack-compatible server: the error code with a 200.
        (HOOK, [(200, "invalid_token", {})], True, None, "slack answered 200: invalid_token"),
    ],
)
async def test_slacks_answers_are_classified(
    slack: FakeSlack,
    http_session: aiohttp.ClientSession,
    path: str,
    script: list[tuple[int, str, dict[str, str]]],
    permanent: bool,
    retry_after: float | None,
    says: str,
) -> None:
    slack.script = list(script)

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session).send(page(), slack.url + path)

    assert (caught.value.permanent, caught.value.retry_after, str(caught.value)) == (
        permanent,
        retry_after,
        says,
    )
    assert "XXXXXXXX" not in str(caught.value)  # the URL (its secret) is never in an error


def test_slack_needs_no_settings() -> None:
    assert "SLACK" in configured_types(Settings())


async def test_a_page_reaches_slack_through_a_worker(
    slack: FakeSlack, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    slack.script = [(503, "service_unavailable", {})]

    paged = await page_through_worker(
        chat_settings(provider_settings), pool, "SLACK", "slack", slack.url + HOOK
    )

    [delivery] = paged.deliveries
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    [post] = slack.posts
    assert re.fullmatch(r":red_circle: \[CRITICAL\] #\d+ DB down", post["blocks"][0]["text"]["text"])
    context = post["blocks"][-1]["elements"][0]["text"]
    assert "http://monoduty.test/a/" in context and "http://monoduty.test/incidents/" in context


async def test_the_webhook_url_is_masked_in_answers_and_logs_and_sending_it_back_keeps_it(
    slack: FakeSlack,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = HOOK.rsplit("/", 1)[1]
    settings = chat_settings(provider_settings)
    slack.script = [(500, "", {})]  # a retry: its log line names the target too
    target = slack.url + HOOK

    paged = await page_through_worker(settings, pool, "SLACK", "slack", target)

    shown = f"{slack.url}/\u2022\u2022\u2022{secret[-4:]}"  # the host and the last 4 characters
    assert paged.created["webhook"]["target_channels"]["slack"] == [shown]
    client = await make_client(settings)
    try:
        path = f"/api/webhooks/{paged.created['webhook']['id']}"
        read = await (await client.get(path, headers=paged.account.headers)).json()
        # What was read, sent back with another change: the stored URL stays the real one.
        resp = await client.patch(
            path,
            json={"name": "renamed", "targetChannels": read["webhook"]["target_channels"]},
            headers=paged.account.headers,
        )
        patched = await resp.json()
        assert resp.status == 200, patched
        # A masked URL is never stored as a target: given where it shows no stored one, it is refused.
        resp = await client.post(
            "/api/me/contact-methods", json={"type": "SLACK", "target": shown}, headers=paged.account.headers
        )
        refused = await resp.json()
    finally:
        await client.close()

    assert read["webhook"]["target_channels"]["slack"] == [shown]
    assert patched["webhook"]["target_channels"]["slack"] == [shown]
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT targets FROM webhooks WHERE id = $1", uuid.UUID(read["webhook"]["id"])
        )
    assert stored["slack"] == [target]
    assert (
        resp.status == 400
        and refused["error"] == "target is a masked URL (\u2022\u2022\u2022): give the whole URL"
    )
    assert secret not in json.dumps([paged.created, read, patched, refused])
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert secret not in logged and shown in logged
