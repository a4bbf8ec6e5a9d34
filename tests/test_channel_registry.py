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
