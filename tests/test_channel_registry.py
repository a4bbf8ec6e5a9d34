"""The channel registry (engine/channels/registry.py): which channels a deployment's settings
configure, what gets built for them, and that the README documents every setting a channel reads.
Each channel's own behaviour is in tests/test_channel_<kind>.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.channels.base import Channel
from engine.channels.email import EmailChannel
from engine.channels.registry import CHANNEL_TYPES, CHANNELS, build_channels, configured_types, shown_target
from engine.settings import NtfySettings, Settings, SmtpSettings, TwilioSettings
from tests.support.channels import FROM_NUMBER
from tests.support.factories import make_client, new_account
from tests.support.providers import TWILIO_SID, TWILIO_TOKEN

TWILIO = TwilioSettings(TWILIO_SID, TWILIO_TOKEN, FROM_NUMBER)
SMTP = SmtpSettings("smtp.example.com", 587, None, None, "starttls", "alerts@monoduty.test")
NTFY = NtfySettings("https://ntfy.example.com")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (Settings(), set()),
        (Settings(smtp=SMTP), {"EMAIL"}),
        (Settings(twilio=TWILIO), {"SMS", "CALL"}),
        (Settings(ntfy=NTFY), {"PUSH_NOTIF"}),
        (Settings(smtp=SMTP, twilio=TWILIO, ntfy=NTFY), {"EMAIL", "SMS", "PUSH_NOTIF", "CALL"}),
        (Settings(dev=True), set(CHANNEL_TYPES)),
    ],
)
async def test_configured_types_and_build_channels_agree(
    http_session: aiohttp.ClientSession, settings: Settings, expected: set[str]
) -> None:
    made: list[str] = []

    def outbox(kind: str) -> Channel:
        made.append(kind)
        return EmailChannel(SMTP)  # any channel will do: only the factory calls matter here

    # The seed's four; each later channel tests its own settings in its test module.
    seed = {"EMAIL", "SMS", "PUSH_NOTIF", "CALL"}
    assert configured_types(settings) & seed == expected & seed
    channels = build_channels(settings, http_session, outbox_factory=outbox)
    assert set(channels) == configured_types(settings)
    if settings.outbox:
        assert sorted(made) == sorted(CHANNEL_TYPES)
    else:
        assert made == [] and all(channel.type == kind for kind, channel in channels.items())


def test_the_readme_documents_every_channel_setting() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for spec in CHANNELS:
        assert all(f"`{name}`" in readme for name in spec.settings), spec.type


CHAT_URLS = {
    "SLACK": "https://hooks.slack.com/services/T0001/B0001/abcdefghijklmnopqrstWXYZ",
    "DISCORD": "https://discord.com/api/webhooks/1234567890/abcdefghijklmnopqrstWXYZ",
    "TEAMS": "https://prod-00.westeurope.logic.azure.com:443/workflows/abc/triggers/manual?sig=abcdefghWXYZ",
}


@pytest.mark.parametrize("kind", sorted(CHAT_URLS))
async def test_a_chat_webhook_url_is_shown_as_its_host_and_last_4_characters(
    kind: str, provider_settings: Settings, pool: asyncpg.Pool, redis: object
) -> None:
    url = CHAT_URLS[kind]
    host = url.split("/")[2]
    account = await new_account(pool)
    client = await make_client(provider_settings)
    try:
        made = await client.post(
            "/api/me/contact-methods", json={"type": kind, "target": url}, headers=account.headers
        )
        created = await made.json()
        listed = await (await client.get("/api/me/contact-methods", headers=account.headers)).json()
        body = {"name": f"{kind} masked", "notificationTypes": [kind], "targetChannels": {kind.lower(): url}}
        hook = await (await client.post("/api/webhooks", json=body, headers=account.headers)).json()
    finally:
        await client.close()

    shown = f"https://{host}/\u2022\u2022\u2022WXYZ"
    assert made.status == 201, created
    assert created["contact_method"]["target"] == shown == shown_target(kind, url)
    assert hook["webhook"]["target_channels"][kind.lower()] == [shown]
    assert url not in json.dumps([created, listed, hook]) and "abcdefgh" not in json.dumps(
        [created, listed, hook]
    )


@pytest.mark.parametrize(
    ("kind", "target", "rule"),
    [
        ("WEBHOOK", "http://127.0.0.1:9/in", "a loopback address (127.0.0.1)"),
        ("WEBHOOK", "http://[::1]:9/in", "a loopback address (::1)"),
        ("SLACK", "https://169.254.169.254/latest/meta-data", "a cloud metadata address (169.254.169.254)"),
        ("DISCORD", "https://10.0.0.5/api/webhooks/1/x", "a private address (10.0.0.5)"),
        ("TEAMS", "https://[fe80::1]/workflows/x", "a link-local address (fe80::1)"),
        ("APPRISE", "json://192.168.1.20/notify", "a private address (192.168.1.20)"),
    ],
)
async def test_a_private_address_literal_is_refused_where_a_target_is_given(
    kind: str, target: str, rule: str, provider_settings: Settings, pool: asyncpg.Pool, redis: object
) -> None:
    settings = provider_settings.with_(secret_key="registry-tests-secret-key-0123456789")
    account = await new_account(pool)
    key = kind.lower()
    hook = {"name": f"{kind} private", "notificationTypes": [kind], "targetChannels": {key: target}}
    step = {"delayMinutes": 5, "targets": [{"type": "channel", "channel": kind, "target": target}]}
    answers = []
    for allowed in (False, True):
        client = await make_client(settings.with_(allow_private_targets=allowed))
        try:
            method = {"type": kind, "target": target}
            for path, body in (
                ("/api/webhooks", hook),
                ("/api/me/contact-methods", method),
                ("/api/escalation-policies", {"name": f"{kind} private {allowed}", "steps": [step]}),
            ):
                resp = await client.post(path, json=body, headers=account.headers)
                answers.append((allowed, path, resp.status, await resp.json()))
        finally:
            await client.close()

    fields = {"/api/webhooks": f"targetChannels.{key}[0]", "/api/me/contact-methods": "target",
              "/api/escalation-policies": "steps[0].targets[0].target"}  # fmt: skip
    for allowed, path, status, answer in answers:
        if allowed:  # MONODUTY_ALLOW_PRIVATE_TARGETS=on: a chat server on the LAN
            assert status == 201, (path, answer)
            continue
        assert status == 400 and answer["code"] == "VALIDATION_ERROR", (path, answer)
        assert answer["error"] == (
            f"{fields[path]} is {rule}; set MONODUTY_ALLOW_PRIVATE_TARGETS=on to allow private targets"
        ), path


async def test_a_name_is_left_to_the_send_time_check(
    provider_settings: Settings, pool: asyncpg.Pool, redis: object
) -> None:
    account = await new_account(pool)
    client = await make_client(provider_settings)
    try:
        resp = await client.post(
            "/api/me/contact-methods",
            json={"type": "SLACK", "target": "https://chat.internal.example/hooks/abc"},
            headers=account.headers,
        )
    finally:
        await client.close()
    assert resp.status == 201, await resp.text()
