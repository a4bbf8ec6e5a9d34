"""Phone calls through a Twilio-compatible API (Calls.json, TwiML), against the local fake Twilio.

The failure contract every HTTP channel keeps is tests/support/channels.py's, run below.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import aiohttp

from engine.channels.base import Channel
from engine.channels.call import CallChannel
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


async def test_call_reads_the_alert_in_valid_twiml(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    message = alert(body="Lag <95s> & rising\x00\x07 fast")
    receipt = await call(fake_providers.url, http_session).send(message, TARGET)

    [request] = fake_providers.requests
    assert request.kind == "call" and request.form["To"] == TARGET
    assert request.form["From"] == FROM_NUMBER
    response = ET.fromstring(request.form["Twiml"])  # noqa: S314 - our own output; it parsing is the point
    assert response.tag == "Response"
    said = [element.text or "" for element in response if element.tag == "Say"]
    assert len(said) == 2 and all(message.title in text for text in said)
    assert "Lag <95s> & rising" in said[0]
    assert response.find("Pause") is not None
    assert receipt.provider_id is not None and receipt.provider_id.startswith("CA")
