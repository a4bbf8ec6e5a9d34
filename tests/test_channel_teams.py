"""TEAMS: a Workflows webhook with an Adaptive Card, against a local server answering as Power
Automate's HTTP trigger does (202 Accepted, JSON errors, 429 with Retry-After), and a page end to end
through a worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from engine.channels.base import ActionLinks, DeliveryError
from engine.channels.teams import TeamsChannel
from engine.settings import Settings
from tests.support.channels import alert
from tests.support.chat import chat_settings, page_through_worker, serve

PATH = "/workflows/0c1f/triggers/manual/paths/invoke"
SIG = "sIg-0123456789abcdefghijklmnop"


@dataclass
class FakeWorkflow:
    """A Teams Workflows trigger: the signature ``sig`` in the query authenticates the call."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    @property
    def hook(self) -> str:
        return f"{self.url}{PATH}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("sig") != SIG:
            error = {
                "code": "DirectApiAuthorizationRequired",
                "message": "The request must be authenticated.",
            }
            return web.json_response({"error": error}, status=401)
        try:
            body = json.loads(await request.read())
            [attachment] = body["attachments"]
            assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        except (ValueError, KeyError, AssertionError):
            error = {"code": "InvalidRequestContent", "message": "The request content is not valid."}
            return web.json_response({"error": error}, status=400)
        if self.script:
            status, answer, headers = self.script.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        self.posts.append(body)
        return web.Response(status=202)


@pytest.fixture
async def workflow() -> AsyncIterator[FakeWorkflow]:
    fake = FakeWorkflow()
    app = web.Application()
    app.router.add_post(PATH, fake.handle)
    async with serve(app) as url:
        fake.url = url
        yield fake


def channel(session: aiohttp.ClientSession) -> TeamsChannel:
    return TeamsChannel(None, session, 5.0)


def page(**changes: object) -> Any:
    base = "https://pager.example/a/t.s"
    actions = ActionLinks("t.s", base, f"{base}?action=acknowledge", f"{base}?action=resolve")
    return alert(
        **{"number": 42, "incident_url": "https://pager.example/incidents/7", "actions": actions, **changes}
    )


async def test_an_adaptive_card_with_facts_and_open_url_actions(
    workflow: FakeWorkflow, http_session: aiohttp.ClientSession
) -> None:
    await channel(http_session).send(page(), workflow.hook)

    [post] = workflow.posts
    assert post["type"] == "message"
    card = post["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    headline, text, facts = card["body"]
    assert headline["text"] == '[CRITICAL] #42 Replica "db-2" <lagging> & failing'
    assert headline["color"] == "attention"
    assert text["text"] == "Replication lag 95s on db-2.\nPrimary is fine."
    assert facts["facts"] == [
        {"title": "Incident", "value": "#42"},
        {"title": "Severity", "value": "CRITICAL"},
        {"title": "Source", "value": "prometheus"},
        {"title": "Webhook", "value": "prod-db"},
    ]
    assert [(a["type"], a["title"], a["url"]) for a in card["actions"]] == [
        ("Action.OpenUrl", "Acknowledge", "https://pager.example/a/t.s?action=acknowledge"),
        ("Action.OpenUrl", "Resolve", "https://pager.example/a/t.s?action=resolve"),
        ("Action.OpenUrl", "Open incident", "https://pager.example/incidents/7"),
    ]


async def test_an_alert_cannot_add_a_link_to_the_card(
    workflow: FakeWorkflow, http_session: aiohttp.ClientSession
) -> None:
    """Teams renders Markdown links in TextBlocks and facts, and has no escape for them."""
    hostile = "[click here](https://evil.example) ![x](https://evil.example/p.png)"
    await channel(http_session).send(page(title=hostile, body=hostile, source=hostile), workflow.hook)

    card = workflow.posts[0]["attachments"][0]["content"]
    shown = [block["text"] for block in card["body"] if "text" in block]
    shown += [fact["value"] for fact in card["body"][-1]["facts"]]
    assert sum("https://evil.example" in text for text in shown) == 3  # title, text, source: shown
    assert not any("](" in text for text in shown)  # and never a link
    assert all("evil" not in action["url"] for action in card["actions"])


def refusal(status: int, code: str, message: str, **headers: str) -> list[Any]:
    return [(status, {"error": {"code": code, "message": message}}, headers)]


@pytest.mark.parametrize(
    ("wrong_sig", "script", "permanent", "retry_after", "says"),
    [
        (True, [], True, None, "teams answered 401: The request must be authenticated."),
        (False, refusal(404, "WorkflowNotFound", "The workflow was not found."), True, None,
         "teams answered 404: The workflow was not found. (code WorkflowNotFound)"),
        (False, refusal(429, "WorkflowTriggerIsThrottled", "Rate limit is exceeded.",
                        **{"Retry-After": "12"}), False, 12.0, "teams answered 429: Rate limit is exceeded."),
        (False, refusal(500, "InternalServerError", "Try again."), False, None,
         "teams answered 500: Try again."),
    ],
)  # fmt: skip
async def test_teams_answers_are_classified(
    workflow: FakeWorkflow,
    http_session: aiohttp.ClientSession,
    wrong_sig: bool,
    script: list[tuple[int, dict[str, Any], dict[str, str]]],
    permanent: bool,
    retry_after: float | None,
    says: str,
) -> None:
    workflow.script = list(script)
    hook = workflow.hook.replace(SIG, "forged") if wrong_sig else workflow.hook

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session).send(page(), hook)

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert str(caught.value).startswith(says) and SIG not in str(caught.value)


async def test_a_page_reaches_teams_through_a_worker(
    workflow: FakeWorkflow, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    paged = await page_through_worker(chat_settings(provider_settings), pool, "TEAMS", "teams", workflow.hook)

    [delivery] = paged.deliveries
    assert delivery["status"] == "delivered"
    card = workflow.posts[0]["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and "DB down" in card["body"][0]["text"]
    assert card["actions"][0]["url"].startswith("http://monoduty.test/a/")
