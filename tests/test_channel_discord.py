"""DISCORD: webhooks, against a local server answering as Discord documents (the created message
with ``wait=true``, JSON errors with codes, 429 with ``retry_after`` in the body), and a page end to
end through a worker."""

from __future__ import annotations

import json
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
from engine.channels.discord import COLOURS, DiscordChannel
from engine.settings import Settings
from tests.support.channels import alert
from tests.support.chat import chat_settings, page_through_worker, serve

WEBHOOK_ID, TOKEN = "1180000000000000001", "dIsCoRdToKeN_abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class FakeDiscord:
    """``POST /api/webhooks/{id}/{token}`` as Discord's Execute Webhook."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    @property
    def hook(self) -> str:
        return f"{self.url}/api/webhooks/{WEBHOOK_ID}/{TOKEN}"

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != WEBHOOK_ID:
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if request.match_info["token"] != TOKEN:
            return web.json_response({"message": "Invalid Webhook Token", "code": 50027}, status=401)
        body = json.loads(await request.read())
        if not body.get("content") and not body.get("embeds"):
            return web.json_response({"message": "Cannot send an empty message", "code": 50006}, status=400)
        if self.script:
            status, answer, headers = self.script.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        self.posts.append(body)
        self.queries.append(dict(request.query))
        if request.query.get("wait") != "true":
            return web.Response(status=204)
        return web.json_response(
            {"id": str(uuid.uuid4().int)[:19], "channel_id": "1", "content": body["content"]}
        )


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    app = web.Application()
    app.router.add_post("/api/webhooks/{id}/{token}", fake.handle)
    async with serve(app) as url:
        fake.url = url
        yield fake


def channel(session: aiohttp.ClientSession) -> DiscordChannel:
    return DiscordChannel(None, session, 5.0)


def page(**changes: object) -> Any:
    base = "https://pager.example/a/t.s"
    actions = ActionLinks("t.s", base, f"{base}?action=acknowledge", f"{base}?action=resolve")
    return alert(
        **{"number": 42, "incident_url": "https://pager.example/incidents/7", "actions": actions, **changes}
    )


async def test_an_embed_coloured_by_severity_with_facts_and_links(
    discord: FakeDiscord, http_session: aiohttp.ClientSession
) -> None:
    receipt = await channel(http_session).send(page(severity="warning"), discord.hook)

    [post], [query] = discord.posts, discord.queries
    assert query == {"wait": "true"} and receipt.provider_id
    [embed] = post["embeds"]
    assert embed["color"] == COLOURS["warning"]
    assert embed["title"] == '[WARNING] #42 Replica "db-2" <lagging> & failing'
    assert embed["url"] == "https://pager.example/incidents/7"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert (
        fields["Incident"] == "\\#42" and fields["Severity"] == "WARNING" and fields["Source"] == "prometheus"
    )
    assert fields["Links"] == (
        "[Acknowledge](https://pager.example/a/t.s?action=acknowledge) · "
        "[Resolve](https://pager.example/a/t.s?action=resolve) · "
        "[Open incident](https://pager.example/incidents/7)"
    )
    assert post["allowed_mentions"] == {"parse": []}


async def test_an_alert_cannot_ping_everyone_or_fake_a_link(
    discord: FakeDiscord, http_session: aiohttp.ClientSession
) -> None:
    await channel(http_session).send(page(title="@everyone [click](https://evil.example)"), discord.hook)

    [post] = discord.posts
    assert post["allowed_mentions"] == {"parse": []}  # mentions render as text, nobody is pinged
    assert "\\[click\\]\\(https://evil.example\\)" in post["content"]


async def test_a_senders_link_cannot_smuggle_a_second_link(
    discord: FakeDiscord, http_session: aiohttp.ClientSession
) -> None:
    url = "https://ok.example/a)[click](https://evil.example"
    await channel(http_session).send(page(actions=None, incident_url=None, links=(url,)), discord.hook)

    [post] = discord.posts
    fields = {f["name"]: f["value"] for f in post["embeds"][0]["fields"]}
    assert fields["Links"] == "[Sender's link](https://ok.example/a%29%5Bclick%5D%28https://evil.example)"


@pytest.mark.parametrize(
    ("hook", "script", "permanent", "retry_after", "says"),
    [
        ("/api/webhooks/1/x", [], True, None, "discord answered 404: Unknown Webhook (code 10015)"),
        (
            f"/api/webhooks/{WEBHOOK_ID}/wrong",
            [],
            True,
            None,
            "discord answered 401: Invalid Webhook Token (code 50027)",
        ),
        (
            None,
            [(429, {"message": "You are being rate limited.", "retry_after": 0.75, "global": False}, {})],
            False,
            0.75,
            "discord answered 429: You are being rate limited.",
        ),
        (None, [(502, {"message": "502: Bad Gateway", "code": 0}, {})], False, None, "discord answered 502"),
    ],
)
async def test_discords_answers_are_classified(
    discord: FakeDiscord,
    http_session: aiohttp.ClientSession,
    hook: str | None,
    script: list[tuple[int, dict[str, Any], dict[str, str]]],
    permanent: bool,
    retry_after: float | None,
    says: str,
) -> None:
    discord.script = list(script)

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session).send(page(), discord.url + hook if hook else discord.hook)

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert str(caught.value).startswith(says) and TOKEN not in str(caught.value)


async def test_a_page_reaches_discord_through_a_worker_after_a_rate_limit(
    discord: FakeDiscord, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    discord.script = [
        (429, {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}, {})
    ]

    paged = await page_through_worker(
        chat_settings(provider_settings), pool, "DISCORD", "discord", discord.hook
    )

    [delivery] = paged.deliveries
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    assert delivery["provider_id"]
    [embed] = discord.posts[0]["embeds"]
    assert "DB down" in embed["title"] and embed["url"].startswith("http://monoduty.test/incidents/")
