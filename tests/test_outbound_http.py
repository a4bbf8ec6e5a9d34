"""The one outbound HTTP path (engine.channels.http through engine.channels.egress): targets on
loopback, link-local, private or metadata addresses are refused at send time, after resolution,
with a permanent error naming the rule; and every platform's answer is classified in one place.

Every session here is the worker's (tests/support/egress.py): DNS answers are injected, and an
attempt to connect anywhere but loopback fails the test rather than leaving the machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.channels import egress, http
from engine.channels.base import DeliveryError
from engine.settings import NtfySettings, Settings
from tests.support.egress import FixedResolver, LoopbackOnlyConnector, guarded_session

# What the platforms answer, as their documentation shows (path → status, body, headers).
ANSWERS: dict[str, tuple[int, Any, dict[str, str]]] = {
    "ok": (200, "ok", {}),
    "discord-429": (
        429,
        {"message": "You are being rate limited.", "retry_after": 1.5, "global": False},
        {},
    ),
    "telegram-429": (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        },
        {},
    ),
    "telegram-400": (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, {}),
    "slack-403": (403, "invalid_token", {}),
    "slack-404": (404, "channel_not_found", {}),
    "slack-429": (429, "rate_limited", {"Retry-After": "30"}),
    "matrix-429": (
        429,
        {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 2000},
        {},
    ),
    "teams-502": (502, {"error": {"code": "BadGateway"}}, {}),
    "teams-404": (404, {"error": {"code": "WorkflowNotFound", "message": "The workflow was not found."}}, {}),
}


class Platform:
    """A local server answering each path with its ANSWERS entry, recording the paths hit."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""

    async def answer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits.append(name)
        status, body, headers = ANSWERS[name]
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    platform = Platform()
    app = web.Application()
    app.router.add_route("*", "/{name}", platform.answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    platform.url = str(server.make_url("")).rstrip("/")
    try:
        yield platform
    finally:
        await server.close()


async def send(
    settings: Settings, url: str, answers: dict[str, list[str]] | None = None
) -> http.ProviderResponse:
    async with guarded_session(settings, answers) as session:
        return await http.post(session, url, provider="webhook", payload={"text": "x"}, timeout=2.0)


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("http://127.0.0.1:{port}/ok", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/ok", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://[::ffff:127.0.0.1]:{port}/ok", "is a loopback address"),
        ("http://internal.example/hook", "internal.example (10.1.2.3) is a private address"),
        ("http://lan.example:{port}/ok", "lan.example (127.0.0.1) is a loopback address"),
    ],
)
async def test_private_targets_are_refused_at_send_time_naming_the_rule(
    platform: Platform, target: str, rule: str
) -> None:
    port = platform.url.rsplit(":", 1)[1]
    answers = {"internal.example": ["10.1.2.3"], "lan.example": ["127.0.0.1"]}
    LoopbackOnlyConnector.attempts.clear()

    with pytest.raises(DeliveryError) as caught:
        await send(Settings(), target.format(port=port), answers)

    assert caught.value.permanent
    assert rule in str(caught.value)
    assert "MONODUTY_ALLOW_PRIVATE_TARGETS=on" in str(caught.value)
    assert platform.hits == [] and LoopbackOnlyConnector.attempts == []  # nothing was even tried


async def test_a_name_with_public_and_private_answers_connects_only_to_the_public_ones() -> None:
    guard = egress.GuardedResolver(
        FixedResolver({"mixed.example": ["10.0.0.7", "93.184.215.14", "127.0.0.1"]})
    )

    answers = await guard.resolve("mixed.example", 443)

    assert [a["host"] for a in answers] == ["93.184.215.14"]


async def test_allowing_private_targets_lets_a_lan_chat_server_in(platform: Platform) -> None:
    port = platform.url.rsplit(":", 1)[1]
    settings = Settings(allow_private_targets=True)

    await send(settings, f"{platform.url}/ok")
    await send(settings, f"http://chat.lan:{port}/ok", {"chat.lan": ["127.0.0.1"]})

    assert platform.hits == ["ok", "ok"]


async def test_the_operators_provider_url_is_trusted_but_not_its_neighbours(platform: Platform) -> None:
    # An ntfy server on the LAN is configuration; another port of the same host is a user's target.
    settings = Settings(ntfy=NtfySettings(platform.url))
    other = f"http://127.0.0.1:{int(platform.url.rsplit(':', 1)[1]) + 1}/ok"

    await send(settings, f"{platform.url}/ok")
    with pytest.raises(DeliveryError, match="loopback"):
        await send(settings, other)

    assert platform.hits == ["ok"]


def test_the_setting_is_read_strictly() -> None:
    assert Settings.from_env({}).allow_private_targets is False
    assert Settings.from_env({"MONODUTY_ALLOW_PRIVATE_TARGETS": "on"}).allow_private_targets is True


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.53", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.9.1", "a private address"),
        ("192.168.1.20", "a private address"),
        ("100.64.0.1", "a shared (CGNAT) address"),
        ("169.254.10.1", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("fe80::1%eth0", "a link-local address"),
        ("fc00::1", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104 - an address checked, not bound
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a private address"),  # Python files the reserved 240/4 under private too
    ],
)
def test_refusal_names_the_rule(address: str, rule: str | None) -> None:
    assert egress.refusal(address) == rule


@pytest.mark.parametrize(
    ("name", "permanent", "retry_after", "says"),
    [
        ("discord-429", False, 1.5, "webhook answered 429: You are being rate limited."),
        ("telegram-429", False, 3.0, "webhook answered 429: Too Many Requests: retry after 3"),
        ("telegram-400", True, None, "webhook answered 400: Bad Request: chat not found"),
        ("slack-403", True, None, "webhook answered 403: invalid_token"),
        ("slack-404", True, None, "webhook answered 404: channel_not_found"),
        ("slack-429", False, 30.0, "webhook answered 429: rate_limited"),
        ("matrix-429", False, 2.0, "webhook answered 429: Too many requests (code M_LIMIT_EXCEEDED)"),
        ("teams-502", False, None, "webhook answered 502"),
        (
            "teams-404",
            True,
            None,
            "webhook answered 404: The workflow was not found. (code WorkflowNotFound)",
        ),
    ],
)
async def test_every_platforms_answer_is_classified_in_one_place(
    platform: Platform, name: str, permanent: bool, retry_after: float | None, says: str
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await send(Settings(allow_private_targets=True), f"{platform.url}/{name}")

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert str(caught.value).startswith(says)


async def test_a_2xx_is_delivered_with_its_body(platform: Platform) -> None:
    response = await send(Settings(allow_private_targets=True), f"{platform.url}/ok")

    assert (response.status, response.text) == (200, "ok")
