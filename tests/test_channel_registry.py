"""The channel registry (engine/channels/registry.py): which channels a deployment's settings
configure, what gets built for them, and that the README documents every setting a channel reads.
Each channel's own behaviour is in tests/test_channel_<kind>.py.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from engine.channels.base import Channel
from engine.channels.email import EmailChannel
from engine.channels.registry import CHANNEL_TYPES, CHANNELS, build_channels, configured_types
from engine.settings import NtfySettings, Settings, SmtpSettings, TwilioSettings
from tests.support.channels import FROM_NUMBER
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
