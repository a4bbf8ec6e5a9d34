"""SMS through a Twilio-compatible API (Messages.json), against the local fake Twilio.

The failure contract every HTTP channel keeps is tests/support/channels.py's, run below.
"""

from __future__ import annotations

import aiohttp
import pytest

from engine.channels.base import Channel
from engine.channels.sms import SmsChannel
from engine.settings import TwilioSettings
from tests.support.channels import FROM_NUMBER, HttpChannelContract, alert
from tests.support.providers import TWILIO_SID, TWILIO_TOKEN, FakeProviders

TARGET = "+14155550100"


def sms(
    url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
) -> Channel:
    twilio = TwilioSettings(TWILIO_SID, secret or TWILIO_TOKEN, FROM_NUMBER, base_url=url)
    return SmsChannel(twilio, session, timeout)


class TestContract(HttpChannelContract):
    target = TARGET
    provider = "twilio"
    secrets = (TWILIO_TOKEN, TWILIO_SID)

    def channel(
        self, url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
    ) -> Channel:
        return sms(url, session, timeout=timeout, secret=secret)


async def test_sms_sends_the_subject_and_message(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    message = alert()
    receipt = await sms(fake_providers.url, http_session).send(message, TARGET)

    [request] = fake_providers.requests
    assert request.kind == "sms"
    assert request.form == {
        "To": TARGET,
        "From": FROM_NUMBER,
        "Body": f"{message.subject}\n{message.body}",
    }
    assert receipt.provider_id is not None and receipt.provider_id.startswith("SM")


@pytest.mark.parametrize("body", ["x" * 5000, "🔥" * 2000])
async def test_sms_body_fits_twilios_limit(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession, body: str
) -> None:
    await sms(fake_providers.url, http_session).send(alert(body=body), TARGET)

    sent = fake_providers.requests[0].form["Body"]
    assert len(sent.encode("utf-16-le")) // 2 <= 1600  # Twilio counts UTF-16 code units
    assert sent.startswith("[CRITICAL] Replica") and sent.endswith("…")
