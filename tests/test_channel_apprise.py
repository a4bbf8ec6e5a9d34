"""APPRISE: any Apprise URL through the apprise package's async API, here json:// and mmost:// to
local servers (Apprise's JSON payload; Mattermost's incoming webhook), a page end to end through a
worker, and the URL (a credential) masked in every API answer and log line."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis

from engine.channels.apprise import AppriseChannel, mask, validate_apprise_url
from engine.channels.base import DeliveryError
from engine.channels.formats import TargetError
from engine.channels.registry import configured_types
from engine.settings import Settings
from tests.support.channels import alert
from tests.support.chat import chat_settings, page_through_worker, serve
from tests.support.egress import FixedResolver

PASSWORD = "s3cret-apprise-pass"
MM_TOKEN = "mattermosttoken7f3k2j9x1q"

pytestmark = pytest.mark.usefixtures("loopback_only")  # Apprise's own HTTP client: no packet off loopback


@dataclass
class Services:
    url: str = ""
    json_posts: list[dict[str, Any]] = field(default_factory=list)
    json_auth: list[str | None] = field(default_factory=list)
    mattermost: list[dict[str, Any]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def json_hook(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.Response(status=self.fail.pop(0), text="down")
        self.json_posts.append(json.loads(await request.read()))
        self.json_auth.append(request.headers.get("Authorization"))
        return web.json_response({"ok": True})

    async def mattermost_hook(self, request: web.Request) -> web.Response:
        # Mattermost's incoming webhook: POST /hooks/{token}, {"text", "username", ...}; 200 "ok".
        if request.match_info["token"] != MM_TOKEN:
            return web.json_response(
                {"id": "web.incoming_webhook.invalid.app_error", "status_code": 400}, status=400
            )
        self.mattermost.append(json.loads(await request.read()))
        return web.Response(text="ok")


@pytest.fixture
async def apprised() -> AsyncIterator[Services]:
    fake = Services()
    app = web.Application()
    app.router.add_post("/notify", fake.json_hook)
    app.router.add_post("/hooks/{token}", fake.mattermost_hook)
    async with serve(app) as url:
        fake.url = url
        yield fake


def channel(*, allow_private: bool = True, answers: dict[str, list[str]] | None = None) -> AppriseChannel:
    resolver = FixedResolver(answers) if answers is not None else None
    return AppriseChannel(Settings(allow_private_targets=allow_private), None, 5.0, resolver)  # type: ignore[arg-type]


async def test_a_json_target_gets_apprises_payload(apprised: Services) -> None:
    target = f"json://monoduty:{PASSWORD}@127.0.0.1:{apprised.port}/notify"

    await channel().send(alert(number=42, incident_url="https://pager.example/incidents/7"), target)

    [post] = apprised.json_posts
    assert post["title"] == '[CRITICAL] #42 Replica "db-2" <lagging> & failing'
    assert post["type"] == "failure"  # Apprise's notify type for a critical page
    assert post["message"].startswith("Replication lag 95s on db-2.\nPrimary is fine.\nIncident: #42")
    assert "Open incident: https://pager.example/incidents/7" in post["message"]
    assert apprised.json_auth == ["Basic " + base64.b64encode(f"monoduty:{PASSWORD}".encode()).decode()]


async def test_a_mattermost_target_is_posted_to_its_incoming_webhook(apprised: Services) -> None:
    await channel().send(alert(), f"mmost://127.0.0.1:{apprised.port}/{MM_TOKEN}")

    [post] = apprised.mattermost
    assert "Replica" in post["text"] and "Replication lag 95s" in post["text"]


async def test_a_refusal_is_transient_as_apprise_says_only_not_sent(apprised: Services) -> None:
    apprised.fail = [500]
    target = f"json://127.0.0.1:{apprised.port}/notify"

    with pytest.raises(DeliveryError) as caught:
        await channel().send(alert(), target)

    assert not caught.value.permanent
    assert (
        str(caught.value)
        == f"apprise: json://127.0.0.1:{apprised.port}/notify did not accept the notification"
    )
    await channel().send(alert(), target)
    assert len(apprised.json_posts) == 1


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("json://127.0.0.1:{port}/notify", "127.0.0.1 is a loopback address"),
        ("json://169.254.169.254/latest", "169.254.169.254 is a cloud metadata address"),
        ("mmost://chat.internal.example/{token}", "chat.internal.example (10.20.30.40) is a private address"),
    ],
)
async def test_private_hosts_are_refused_before_apprise_sends(
    apprised: Services, target: str, rule: str
) -> None:
    answers = {"chat.internal.example": ["10.20.30.40"]}

    with pytest.raises(DeliveryError) as caught:
        await channel(allow_private=False, answers=answers).send(
            alert(), target.format(port=apprised.port, token=MM_TOKEN)
        )

    assert caught.value.permanent and rule in str(caught.value)
    assert apprised.json_posts == [] and apprised.mattermost == []


@pytest.mark.parametrize(
    "raw",
    ["pover://userkeyuserkey@apptokenapptoken", " json://example.org/x ", "mmosts://chat.example.org/tok"],
)
def test_apprise_urls_are_accepted(raw: str) -> None:
    assert validate_apprise_url(raw) == raw.strip()


@pytest.mark.parametrize("raw", ["", "https//nothing", "nope://x", "just text"])
def test_urls_no_plugin_reads_are_refused(raw: str) -> None:
    with pytest.raises(TargetError, match="must be an Apprise URL"):
        validate_apprise_url(raw, field="target")


def test_the_mask_keeps_no_credential() -> None:
    assert (
        mask(f"json://monoduty:{PASSWORD}@chat.example.org/notify")
        == "json://monoduty:****@chat.example.org/notify"
    )
    assert PASSWORD not in mask(f"json://monoduty:{PASSWORD}@chat.example.org/notify")
    assert MM_TOKEN not in mask(f"mmost://chat.example.org/{MM_TOKEN}")
    assert "apptokenapptoken" not in mask("pover://userkeyuserkey@apptokenapptoken")


def test_apprise_needs_no_settings() -> None:
    assert "APPRISE" in configured_types(Settings())


async def test_a_page_through_a_worker_and_the_url_masked_in_answers_and_logs(
    apprised: Services,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    target = f"json://monoduty:{PASSWORD}@127.0.0.1:{apprised.port}/notify"
    apprised.fail = [503]

    paged = await page_through_worker(chat_settings(provider_settings), pool, "APPRISE", "apprise", target)

    [delivery] = paged.deliveries
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    assert "DB down" in apprised.json_posts[0]["title"]
    shown = paged.created["webhook"]["target_channels"]["apprise"]
    assert shown == [f"json://monoduty:****@127.0.0.1:{apprised.port}/notify"]
    assert PASSWORD not in json.dumps(paged.created)
    assert PASSWORD not in (delivery["last_error"] or "")
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert PASSWORD not in logged and target not in logged
