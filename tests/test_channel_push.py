"""Push notifications through ntfy's publish API, against the local fake ntfy.

The failure contract every HTTP channel keeps is tests/support/channels.py's, run below.
"""

from __future__ import annotations

import base64

import aiohttp
import pytest

from engine.channels.base import ActionLinks, Channel
from engine.channels.push import PushChannel
from engine.settings import NtfySettings
from tests.support.channels import HttpChannelContract, alert
from tests.support.providers import NTFY_TOKEN, FakeProviders

TARGET = "ops-alerts"


def push(
    url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
) -> Channel:
    return PushChannel(NtfySettings(url=url, token=secret or NTFY_TOKEN), session, timeout)


class TestContract(HttpChannelContract):
    target = TARGET
    provider = "ntfy"
    secrets = (NTFY_TOKEN,)

    def channel(
        self, url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
    ) -> Channel:
        return push(url, session, timeout=timeout, secret=secret)


async def test_push_publishes_title_priority_and_tags(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    message = alert()
    receipt = await push(fake_providers.url, http_session).send(message, TARGET)

    [request] = fake_providers.requests
    assert (request.kind, request.target) == ("push", TARGET)
    assert request.body == message.body
    assert request.headers["Title"] == message.subject
    assert request.headers["Priority"] == "5"
    assert request.headers["Tags"] == "critical"
    assert request.headers["Authorization"] == f"Bearer {NTFY_TOKEN}"
    assert receipt.provider_id


@pytest.mark.parametrize(
    ("severity", "is_test", "priority", "tags"),
    [
        ("critical", False, "5", "critical"),
        ("error", False, "4", "error"),
        ("warning", True, "3", "warning,test"),
        ("info", False, "2", "info"),
    ],
)
async def test_push_priority_follows_severity(
    fake_providers: FakeProviders,
    http_session: aiohttp.ClientSession,
    severity: str,
    is_test: bool,
    priority: str,
    tags: str,
) -> None:
    await push(fake_providers.url, http_session).send(alert(severity=severity, is_test=is_test), TARGET)

    headers = fake_providers.requests[0].headers
    assert (headers["Priority"], headers["Tags"]) == (priority, tags)


async def test_push_encodes_a_non_ascii_title(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    message = alert(title="Réplica caída 🔥\nsecond line")
    await push(fake_providers.url, http_session).send(message, TARGET)

    title = fake_providers.requests[0].headers["Title"]
    assert title.startswith("=?UTF-8?B?") and title.endswith("?=")
    assert base64.b64decode(title[10:-2]).decode() == "[CRITICAL] Réplica caída 🔥 second line"


async def test_push_without_a_token_sends_no_authorization(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    channel = PushChannel(NtfySettings(url=fake_providers.url), http_session, 5.0)
    await channel.send(alert(body=""), "public-topic")

    [request] = fake_providers.requests
    assert "Authorization" not in request.headers
    assert request.body == alert().title  # an empty message still says something


def action_links(base: str) -> ActionLinks:
    page = f"{base}/a/payload.signature"
    return ActionLinks("payload.signature", page, f"{page}?action=acknowledge", f"{page}?action=resolve")


async def test_tapping_a_push_opens_the_senders_first_link(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    links = ("https://grafana.example.org/d/db", "https://wiki.example.org/db")
    await push(fake_providers.url, http_session).send(alert(links=links), TARGET)

    headers = fake_providers.requests[0].headers
    assert headers["Click"] == links[0]
    assert "Actions" not in headers  # no action links: a test send, or no public URL and secret key


async def test_a_push_with_action_links_has_buttons_and_opens_the_incident_page(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    # A comma and a semicolon in the public URL would end an unquoted value of ntfy's format.
    actions = action_links("https://ops.example.org/pager;x,y")
    message = alert(actions=actions, links=("https://grafana.example.org/d/db",))
    await push(fake_providers.url, http_session).send(message, TARGET)

    headers = fake_providers.requests[0].headers
    assert headers["Click"] == actions.page
    assert headers["Actions"] == (
        f'action=http, label=Acknowledge, url="{actions.acknowledge}", method=POST, clear=true; '
        f'action=http, label=Resolve, url="{actions.resolve}", method=POST, clear=true; '
        'action=view, label=Open link, url="https://grafana.example.org/d/db"'
    )
