"""Phone calls through a Twilio-compatible API (Calls.json, TwiML), against the local fake Twilio.

The failure contract every HTTP channel keeps is tests/support/channels.py's, run below.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import aiohttp
import pytest

from engine.channels.base import Channel
from engine.channels.call import CallChannel, spoken_title
from engine.settings import TwilioSettings
from tests.support.channels import FROM_NUMBER, HttpChannelContract, alert
from tests.support.providers import TWILIO_SID, TWILIO_TOKEN, FakeProviders

TARGET = "+14155550101"


def call(
    url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
) -> Channel:
    twilio = TwilioSettings(TWILIO_SID, secret or TWILIO_TOKEN, FROM_NUMBER, base_url=url)
    return CallChannel(twilio, session, timeout)


class TestContract(HttpChannelContract):
    target = TARGET
    provider = "twilio"
    secrets = (TWILIO_TOKEN, TWILIO_SID)

    def channel(
        self, url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
    ) -> Channel:
        return call(url, session, timeout=timeout, secret=secret)


async def test_call_says_the_title_once_in_valid_twiml(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    message = alert(title="Lag <95s> & rising\x00\x07 fast", body="cluster=prod https://grafana/d/1")
    receipt = await call(fake_providers.url, http_session).send(message, TARGET)

    [request] = fake_providers.requests
    assert request.kind == "call" and request.form["To"] == TARGET
    assert request.form["From"] == FROM_NUMBER
    response = ET.fromstring(request.form["Twiml"])  # noqa: S314 - our own output; it parsing is the point
    assert response.tag == "Response"
    said = [element.text or "" for element in response if element.tag == "Say"]
    assert said == ["Monoduty alert from prod-db.", "Severity critical. Lag <95s> & rising fast."]
    assert response.find("Pause") is not None
    assert "https" not in request.form["Twiml"]  # the body (labels, links) is not read out
    assert receipt.provider_id is not None and receipt.provider_id.startswith("CA")


@pytest.mark.parametrize(
    ("title", "spoken"),
    [
        ("[FIRING:1000] TargetDown", "Firing, 1000 alerts: TargetDown"),
        ("[RESOLVED] db_1 is down", "Resolved: db 1 is down"),
        ("Disk full.", "Disk full"),
    ],
)
def test_titles_are_said_clearly(title: str, spoken: str) -> None:
    assert spoken_title(title) == spoken
