"""TELEGRAM: the Bot API's sendMessage, against a local server answering as the Bot API documents
({"ok": true, "result"}; {"ok": false, "error_code", "description"}; 429 with
parameters.retry_after), and a page end to end through a worker."""

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
from engine.channels.registry import configured_types
from engine.channels.telegram import TelegramChannel, validate_chat_id
from engine.settings import Settings, TelegramSettings
from tests.support.channels import alert
from tests.support.chat import chat_settings, page_through_worker, serve

TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CHAT = "-1001234567890"


@dataclass
class FakeBotApi:
    """``POST /bot<token>/sendMessage``; chats it knows: CHAT, and @monoduty_ops."""

    url: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    async def send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = json.loads(await request.read())
        if self.script:
            status, answer = self.script.pop(0)
            return web.json_response(answer, status=status)
        if body.get("chat_id") not in (CHAT, "@monoduty_ops"):
            answer = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            return web.json_response(answer, status=400)
        self.sent.append(body)
        result = {"message_id": len(self.sent), "chat": {"id": int(CHAT)}, "text": "..."}
        return web.json_response({"ok": True, "result": result})


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi()
    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", fake.send_message)
    async with serve(app) as url:
        fake.url = url
        yield fake


def refusal(status: int, description: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """An error as the Bot API answers one (the status is its error_code)."""
    return status, {"ok": False, "error_code": status, "description": description, **extra}


def channel(session: aiohttp.ClientSession, url: str, token: str = TOKEN) -> TelegramChannel:
    return TelegramChannel(TelegramSettings(token, url), session, 5.0)


def page(**changes: object) -> Any:
    base = "https://pager.example/a/t.s"
    actions = ActionLinks("t.s", base, f"{base}?action=acknowledge", f"{base}?action=resolve")
    return alert(
        **{"number": 42, "incident_url": "https://pager.example/incidents/7", "actions": actions, **changes}
    )


async def test_the_message_is_escaped_html_with_the_links(
    bot_api: FakeBotApi, http_session: aiohttp.ClientSession
) -> None:
    receipt = await channel(http_session, bot_api.url).send(page(), CHAT)

    [sent] = bot_api.sent
    assert receipt.provider_id == "1"
    assert (sent["chat_id"], sent["parse_mode"], sent["disable_web_page_preview"]) == (CHAT, "HTML", True)
    assert sent["text"] == (
        '🔴 <b>[CRITICAL] #42 Replica "db-2" &lt;lagging&gt; &amp; failing</b>\n\n'
        "Replication lag 95s on db-2.\nPrimary is fine.\n\n"
        "Incident: #42 · Severity: CRITICAL · Source: prometheus · Webhook: prod-db\n\n"
        '<a href="https://pager.example/a/t.s?action=acknowledge">Acknowledge</a> · '
        '<a href="https://pager.example/a/t.s?action=resolve">Resolve</a> · '
        '<a href="https://pager.example/incidents/7">Open incident</a>'
    )


async def test_an_attribute_cannot_be_broken_out_of(
    bot_api: FakeBotApi, http_session: aiohttp.ClientSession
) -> None:
    await channel(http_session, bot_api.url).send(
        page(actions=None, incident_url='https://x.example/"><b>'), CHAT
    )

    assert '<a href="https://x.example/&quot;&gt;&lt;b&gt;">Open incident</a>' in bot_api.sent[0]["text"]


async def test_an_alert_cannot_mention_a_user_or_add_markup(
    bot_api: FakeBotApi, http_session: aiohttp.ClientSession
) -> None:
    hostile = '@durov <a href="https://evil.example">click</a> ops@example.com'
    await channel(http_session, bot_api.url).send(page(title=hostile, body=hostile, actions=None), CHAT)

    text = bot_api.sent[0]["text"]
    assert "@durov" not in text and text.count("@\u200bdurov") == 2
    assert "ops@example.com" in text  # an address is no mention
    assert '<a href="https://evil.example"' not in text and "&lt;a href=" in text


@pytest.mark.parametrize(
    ("chat", "script", "permanent", "retry_after", "says"),
    [
        ("-42", [], True, None, "telegram answered 400: Bad Request: chat not found"),
        (CHAT, [refusal(403, "Forbidden: bot was blocked by the user")],
         True, None, "telegram answered 403: Forbidden: bot was blocked by the user"),
        (CHAT, [refusal(429, "Too Many Requests: retry after 9", parameters={"retry_after": 9})],
         False, 9.0, "telegram answered 429: Too Many Requests"),
        (CHAT, [(200, refusal(400, "Bad Request: message text is empty")[1])],
         True, None, "telegram answered 200: Bad Request: message text is empty"),
        (CHAT, [refusal(502, "Bad Gateway")], False, None, "telegram answered 502: Bad Gateway"),
    ],
)  # fmt: skip
async def test_bot_api_answers_are_classified(
    bot_api: FakeBotApi,
    http_session: aiohttp.ClientSession,
    chat: str,
    script: list[tuple[int, dict[str, Any]]],
    permanent: bool,
    retry_after: float | None,
    says: str,
) -> None:
    bot_api.script = list(script)

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session, bot_api.url).send(page(), chat)

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert str(caught.value).startswith(says)


async def test_the_bot_token_never_shows_in_errors_or_logs(
    bot_api: FakeBotApi, http_session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bot_api.script = [
        refusal(400, f"token {TOKEN} is not allowed"),
        (200, {"ok": False, "description": TOKEN}),
    ]
    errors = []
    for token in (TOKEN, TOKEN, TOKEN + "x"):
        with pytest.raises(DeliveryError) as caught:
            await channel(http_session, bot_api.url, token).send(page(), CHAT)
        errors.append(str(caught.value))

    assert "token *** is not allowed" in errors[0]
    assert all(TOKEN not in error for error in errors) and TOKEN not in caplog.text
    assert errors[2] == "telegram answered 401: Unauthorized"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" -1001234567890 ", "-1001234567890"), ("42", "42"), ("@monoduty_ops", "@monoduty_ops")],
)
def test_valid_chat_ids(raw: str, expected: str) -> None:
    assert validate_chat_id(raw) == expected


@pytest.mark.parametrize("raw", ["", "@ab", "chat", "12 34", "@bad-name", "1" * 21])
def test_invalid_chat_ids(raw: str) -> None:
    with pytest.raises(TargetError, match="Telegram chat id"):
        validate_chat_id(raw, field="target")


def test_telegram_needs_the_bot_token() -> None:
    assert "TELEGRAM" not in configured_types(Settings())
    settings = Settings.from_env(
        {"MONODUTY_TELEGRAM_BOT_TOKEN": TOKEN, "MONODUTY_TELEGRAM_BASE_URL": "http://127.0.0.1:9/"}
    )
    assert settings.telegram == TelegramSettings(TOKEN, "http://127.0.0.1:9")
    assert "TELEGRAM" in configured_types(settings) and TOKEN not in repr(settings)


async def test_a_page_reaches_a_telegram_chat_through_a_worker(
    bot_api: FakeBotApi, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    bot_api.script = [refusal(429, "Too Many Requests: retry after 0", parameters={"retry_after": 0})]
    # The bot's API is the operator's own configuration: trusted even with private targets refused.
    settings = chat_settings(
        provider_settings, telegram=TelegramSettings(TOKEN, bot_api.url), allow_private_targets=False
    )

    paged = await page_through_worker(settings, pool, "TELEGRAM", "telegram", CHAT)

    [delivery] = paged.deliveries
    assert (delivery["status"], delivery["attempts"], delivery["provider_id"]) == ("delivered", 2, "1")
    text = bot_api.sent[0]["text"]
    assert "DB down</b>" in text and '<a href="http://monoduty.test/a/' in text
