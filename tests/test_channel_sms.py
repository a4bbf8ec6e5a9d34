"""SMS through a Twilio-compatible API (Messages.json), against the local fake Twilio.

The failure contract every HTTP channel keeps is tests/support/channels.py's, run below.
"""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest

from engine.channels.base import Channel
from engine.channels.sms import SmsChannel, fits_one_segment, gsm7_length, render
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


async def test_sms_asks_twilio_for_its_status_callbacks(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession
) -> None:
    receipts = "http://monoduty.test/twilio/status/0b0e6d1c-54a5-4b7e-9f5e-2a1c0f3d9e11"
    await sms(fake_providers.url, http_session).send(replace(alert(), status_callback=receipts), TARGET)

    [request] = fake_providers.requests
    assert request.form["StatusCallback"] == receipts


@pytest.mark.parametrize("body", ["x" * 5000, "🔥" * 2000])
async def test_a_long_message_still_makes_one_segment(
    fake_providers: FakeProviders, http_session: aiohttp.ClientSession, body: str
) -> None:
    await sms(fake_providers.url, http_session).send(alert(body=body), TARGET)

    sent = fake_providers.requests[0].form["Body"]
    assert fits_one_segment(sent)
    assert sent.startswith('[CRITICAL] Replica "db-2" <lagging> & failing')


# "[CRITICAL] Disk full on db-1\nok\n" is 34 septets ("[" and "]" are GSM-7 escapes, two each);
# "[CRITICAL] Диск заполнен\nok\n" is 28 UCS-2 units.
GSM7_TITLE = "Disk full on db-1"
UCS2_TITLE = "Диск заполнен"  # Cyrillic is not GSM-7: the SMS is UCS-2, 70 units a segment
GSM7_ROOM = 160 - 34
UCS2_ROOM = 70 - 28


@pytest.mark.parametrize(
    ("title", "detail", "kept"),
    [
        (GSM7_TITLE, "a" * GSM7_ROOM, True),  # 160 septets: one segment
        (GSM7_TITLE, "a" * (GSM7_ROOM + 1), False),  # 161: the detail would need a second segment
        (GSM7_TITLE, "{" * (GSM7_ROOM // 2), True),  # "{" is an escape: two septets each
        (GSM7_TITLE, "{" * (GSM7_ROOM // 2) + "a", False),
        (UCS2_TITLE, "b" * UCS2_ROOM, True),  # 70 UCS-2 units
        (UCS2_TITLE, "b" * (UCS2_ROOM + 1), False),
        (GSM7_TITLE, "é" * 50 + "…", False),  # "…" is not GSM-7: the text would be UCS-2, over 70
    ],
    ids=["gsm7-160", "gsm7-161", "gsm7-escapes-160", "gsm7-escapes-161", "ucs2-70", "ucs2-71", "ucs2-switch"],
)
def test_sms_detail_only_when_it_fits_one_segment(title: str, detail: str, kept: bool) -> None:
    subject = alert(title=title).subject
    # The detail as a second line, after a first one that fits, so it is kept whole or not at all.
    text = render(alert(title=title, body=f"ok\n{detail}"))
    assert fits_one_segment(text)
    expected = f"{subject}\nok\n{detail}" if kept else f"{subject}\nok"
    assert text == expected


def test_segment_arithmetic() -> None:
    assert gsm7_length("a" * 160) == 160 and fits_one_segment("a" * 160)
    assert not fits_one_segment("a" * 161)
    assert gsm7_length("€[]") == 6
    assert gsm7_length("Диск") is None and fits_one_segment("Д" * 70) and not fits_one_segment("Д" * 71)
    assert not fits_one_segment("🔥" * 36)  # outside the BMP: two UCS-2 units each


def test_sms_cuts_a_first_detail_line_rather_than_drop_it() -> None:
    labels = "cluster=prod-eu namespace=payments " + "pod=checkout-7d9f-1 " * 10
    text = render(alert(title=GSM7_TITLE, body=labels))
    assert text.startswith("[CRITICAL] Disk full on db-1\ncluster=prod-eu namespace=payments pod=")
    length = gsm7_length(text)
    assert text.endswith("...") and length is not None and 150 <= length <= 160


def test_sms_carries_the_first_link_before_the_message() -> None:
    links = ("https://backups.example.org/jobs/8812", "https://wiki.example.org/backups")
    text = render(alert(title=GSM7_TITLE, body="exit code 2", links=links))
    assert text == "[CRITICAL] Disk full on db-1\nhttps://backups.example.org/jobs/8812\nexit code 2"


def test_a_title_longer_than_a_segment_is_sent_whole() -> None:
    title = "Replication stopped " * 9  # 180 characters
    text = render(alert(title=title.strip(), body="details"))
    assert text == f"[CRITICAL] {title.strip()}"
