"""Phone calls through a Twilio-compatible API (Calls.json, TwiML), against the local fake Twilio.

The failure contract every HTTP channel keeps is tests/support/channels.py's, run below.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import aiohttp
import pytest

from engine.channels.base import ActionLinks, Channel
from engine.channels.call import MENU, CallChannel, spoken_title
from engine.settings import TwilioSettings
from tests.support.channels import FROM_NUMBER, HttpChannelContract, alert
from tests.support.providers import TWILIO_SID, TWILIO_TOKEN, FakeProviders

TARGET = "+14155550101"


PUBLIC_URL = "https://pager.example.com"
TOKEN = "grant-payload.grant-signature"
ACTIONS = ActionLinks(token=TOKEN, page=f"{PUBLIC_URL}/a/{TOKEN}", acknowledge="", resolve="")


def call(
    url: str,
    session: aiohttp.ClientSession,
    *,
    timeout: float = 5.0,
    secret: str | None = None,
    machine_detection: bool = False,
) -> Channel:
    twilio = TwilioSettings(
        TWILIO_SID, secret or TWILIO_TOKEN, FROM_NUMBER, base_url=url, machine_detection=machine_detection
    )
    return CallChannel(twilio, session, timeout, PUBLIC_URL)


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


async def test_a_message_with_actions_offers_the_keys_after_the_alert(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    await call(fake_providers.url, http_session).send(replace(alert(), actions=ACTIONS), TARGET)

    [request] = fake_providers.requests
    assert "MachineDetection" not in request.form and "Url" not in request.form
    response = ET.fromstring(request.form["Twiml"])  # noqa: S314 - our own output
    assert [element.tag for element in response] == ["Say", "Pause", "Say", "Gather", "Redirect"]
    gather, redirect = response[3], response[4]
    action = f"{PUBLIC_URL}/twilio/voice/{TOKEN}"
    assert gather.attrib == {"numDigits": "1", "timeout": "10", "action": action, "method": "POST"}
    assert [(e.tag, e.text) for e in gather] == [("Say", MENU)]
    assert MENU == "Press 4 to acknowledge, 6 to resolve, 5 to escalate, 1 to repeat."
    # No key within the timeout: Twilio goes on to ask the same URL (without Digits).
    assert (redirect.text, redirect.get("method")) == (action, "POST")


async def test_every_call_asks_twilio_how_it_ended(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    receipts = "http://monoduty.test/twilio/status/0b0e6d1c-54a5-4b7e-9f5e-2a1c0f3d9e11"
    for machine_detection in (False, True):
        channel = call(fake_providers.url, http_session, machine_detection=machine_detection)
        await channel.send(replace(alert(), status_callback=receipts), TARGET)  # the alert said
        await channel.send(replace(alert(), actions=ACTIONS, status_callback=receipts), TARGET)  # a menu
    await call(fake_providers.url, http_session).send(alert(), TARGET)  # none given: none asked for

    *made, without = fake_providers.requests
    assert [r.form["StatusCallback"] for r in made] == [receipts] * 4
    # Only the call's end is asked for (Twilio's default): no StatusCallbackEvent.
    assert not any("StatusCallbackEvent" in r.form for r in made)
    assert "StatusCallback" not in without.form


async def test_machine_detection_asks_twilio_who_answered_before_anything_is_said(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    channel = call(fake_providers.url, http_session, machine_detection=True)
    await channel.send(replace(alert(), actions=ACTIONS), TARGET)
    await channel.send(alert(), "+14155550102")  # no actions: nothing to fetch, the alert is said

    with_menu, without = fake_providers.requests
    assert with_menu.form["MachineDetection"] == "Enable" and "Twiml" not in with_menu.form
    assert with_menu.form["Url"] == f"{PUBLIC_URL}/twilio/voice/{TOKEN}?stage=answered"
    assert without.form["MachineDetection"] == "Enable" and "Url" not in without.form
    assert "<Gather" not in without.form["Twiml"]
