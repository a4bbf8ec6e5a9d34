"""Every channel against real local servers speaking its provider's protocol.

What a channel promises: the provider receives the alert in its own terms; failures come back as
a DeliveryError that is permanent only when retrying cannot help; and no credential ever shows up
in an error message or a log line.
"""

# The fixtures imported from tests.providers are used as parameters of the same name.

from __future__ import annotations

import base64
import logging
import ssl
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import aiohttp
import pytest
import trustme

from engine.channels.base import Channel, DeliveryError, Message
from engine.channels.call import CallChannel
from engine.channels.email import EmailChannel
from engine.channels.push import PushChannel
from engine.channels.registry import CHANNEL_TYPES, CHANNELS, build_channels, configured_types
from engine.channels.sms import SmsChannel
from engine.settings import NtfySettings, Settings, SmtpSettings, TwilioSettings
from tests.support.providers import (
    NTFY_TOKEN,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    Reply,
    SmtpServer,
    closed_port,
)

FROM_NUMBER = "+14155550199"
HttpKind = Literal["sms", "call", "push"]
HTTP_KINDS: tuple[HttpKind, ...] = ("sms", "call", "push")
TARGETS: dict[HttpKind, str] = {"sms": "+14155550100", "call": "+14155550101", "push": "ops-alerts"}
PROVIDER_NAMES: dict[HttpKind, str] = {"sms": "twilio", "call": "twilio", "push": "ntfy"}


def alert(**changes: object) -> Message:
    message = Message(
        alert_id=str(uuid.uuid4()),
        webhook_name="prod-db",
        title='Replica "db-2" <lagging> & failing',
        body="Replication lag 95s on db-2.\nPrimary is fine.",
        severity="critical",
        source="prometheus",
        received_at=datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
    )
    return replace(message, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def http_channel(
    kind: HttpKind,
    url: str,
    session: aiohttp.ClientSession,
    *,
    timeout: float = 5.0,
    secret: str | None = None,
) -> Channel:
    """An SMS, CALL or PUSH channel pointed at ``url``; ``secret`` replaces the right credential."""
    if kind == "push":
        return PushChannel(NtfySettings(url=url, token=secret or NTFY_TOKEN), session, timeout)
    twilio = TwilioSettings(TWILIO_SID, secret or TWILIO_TOKEN, FROM_NUMBER, base_url=url)
    return (SmsChannel if kind == "sms" else CallChannel)(twilio, session, timeout)


def smtp_settings(server: SmtpServer, **changes: object) -> SmtpSettings:
    settings = SmtpSettings(
        host=server.host,
        port=server.port,
        username=None,
        password=None,
        tls="none",
        from_addr="alerts@monoduty.test",
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


# -- SMS, CALL, PUSH: success -------------------------------------------------------------------


async def test_sms_sends_the_subject_and_message(
    fake_providers: FakeProviders, session: aiohttp.ClientSession
) -> None:
    message = alert()
    receipt = await http_channel("sms", fake_providers.url, session).send(message, "+14155550100")

    [request] = fake_providers.requests
    assert request.kind == "sms"
    assert request.form == {
        "To": "+14155550100",
        "From": FROM_NUMBER,
        "Body": f"{message.subject}\n{message.body}",
    }
    assert receipt.provider_id is not None and receipt.provider_id.startswith("SM")


@pytest.mark.parametrize("body", ["x" * 5000, "🔥" * 2000])
async def test_sms_body_fits_twilios_limit(
    fake_providers: FakeProviders, session: aiohttp.ClientSession, body: str
) -> None:
    await http_channel("sms", fake_providers.url, session).send(alert(body=body), "+14155550100")

    sent = fake_providers.requests[0].form["Body"]
    assert len(sent.encode("utf-16-le")) // 2 <= 1600  # Twilio counts UTF-16 code units
    assert sent.startswith("[CRITICAL] Replica") and sent.endswith("…")


async def test_call_reads_the_alert_in_valid_twiml(
    fake_providers: FakeProviders, session: aiohttp.ClientSession
) -> None:
    message = alert(body="Lag <95s> & rising\x00\x07 fast")
    receipt = await http_channel("call", fake_providers.url, session).send(message, "+14155550101")

    [request] = fake_providers.requests
    assert request.kind == "call" and request.form["To"] == "+14155550101"
    assert request.form["From"] == FROM_NUMBER
    response = ET.fromstring(request.form["Twiml"])  # noqa: S314 - our own output; it parsing is the point
    assert response.tag == "Response"
    said = [element.text or "" for element in response if element.tag == "Say"]
    assert len(said) == 2 and all(message.title in text for text in said)
    assert "Lag <95s> & rising" in said[0]
    assert response.find("Pause") is not None
    assert receipt.provider_id is not None and receipt.provider_id.startswith("CA")


async def test_push_publishes_title_priority_and_tags(
    fake_providers: FakeProviders, session: aiohttp.ClientSession
) -> None:
    message = alert()
    receipt = await http_channel("push", fake_providers.url, session).send(message, "ops-alerts")

    [request] = fake_providers.requests
    assert (request.kind, request.target) == ("push", "ops-alerts")
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
    session: aiohttp.ClientSession,
    severity: str,
    is_test: bool,
    priority: str,
    tags: str,
) -> None:
    await http_channel("push", fake_providers.url, session).send(
        alert(severity=severity, is_test=is_test), "ops-alerts"
    )

    headers = fake_providers.requests[0].headers
    assert (headers["Priority"], headers["Tags"]) == (priority, tags)


async def test_push_encodes_a_non_ascii_title(
    fake_providers: FakeProviders, session: aiohttp.ClientSession
) -> None:
    message = alert(title="Réplica caída 🔥\nsecond line")
    await http_channel("push", fake_providers.url, session).send(message, "ops-alerts")

    title = fake_providers.requests[0].headers["Title"]
    assert title.startswith("=?UTF-8?B?") and title.endswith("?=")
    assert base64.b64decode(title[10:-2]).decode() == "[CRITICAL] Réplica caída 🔥 second line"


async def test_push_without_a_token_sends_no_authorization(
    fake_providers: FakeProviders, session: aiohttp.ClientSession
) -> None:
    channel = PushChannel(NtfySettings(url=fake_providers.url), session, 5.0)
    await channel.send(alert(body=""), "public-topic")

    [request] = fake_providers.requests
    assert "Authorization" not in request.headers
    assert request.body == alert().title  # an empty message still says something


# -- SMS, CALL, PUSH: failures ------------------------------------------------------------------


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_server_error_is_transient_and_the_next_attempt_can_succeed(
    fake_providers: FakeProviders, session: aiohttp.ClientSession, kind: HttpKind
) -> None:
    channel = http_channel(kind, fake_providers.url, session)
    fake_providers.script(TARGETS[kind], Reply(500), Reply(503))

    for status in (500, 503):
        with pytest.raises(DeliveryError) as caught:
            await channel.send(alert(), TARGETS[kind])
        assert not caught.value.permanent and caught.value.retry_after is None
        assert f"{PROVIDER_NAMES[kind]} answered {status}" in str(caught.value)
    assert (await channel.send(alert(), TARGETS[kind])).provider_id
    assert len(fake_providers.requests) == 3


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_rate_limit_is_transient_with_retry_after(
    fake_providers: FakeProviders, session: aiohttp.ClientSession, kind: HttpKind
) -> None:
    fake_providers.script(TARGETS[kind], Reply(429, headers={"Retry-After": "7"}))

    with pytest.raises(DeliveryError) as caught:
        await http_channel(kind, fake_providers.url, session).send(alert(), TARGETS[kind])
    assert not caught.value.permanent
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_bad_request_is_permanent_and_says_why(
    fake_providers: FakeProviders, session: aiohttp.ClientSession, kind: HttpKind
) -> None:
    refusal = {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}
    fake_providers.script(TARGETS[kind], Reply(400, json=refusal))

    with pytest.raises(DeliveryError) as caught:
        await http_channel(kind, fake_providers.url, session).send(alert(), TARGETS[kind])
    assert caught.value.permanent
    assert str(caught.value) == (
        f"{PROVIDER_NAMES[kind]} answered 400: The 'To' number is not a valid phone number. (code 21211)"
    )


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_wrong_credentials_are_permanent(
    fake_providers: FakeProviders, session: aiohttp.ClientSession, kind: HttpKind
) -> None:
    channel = http_channel(kind, fake_providers.url, session, secret="not-the-right-one")

    with pytest.raises(DeliveryError) as caught:
        await channel.send(alert(), TARGETS[kind])
    assert caught.value.permanent and "answered 401" in str(caught.value)
    assert fake_providers.requests == []


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_no_answer_in_time_is_transient(
    fake_providers: FakeProviders, session: aiohttp.ClientSession, kind: HttpKind
) -> None:
    fake_providers.script(TARGETS[kind], Reply(hang=True))

    with pytest.raises(DeliveryError) as caught:
        await http_channel(kind, fake_providers.url, session, timeout=0.2).send(alert(), TARGETS[kind])
    assert not caught.value.permanent and "no answer within 0.2s" in str(caught.value)


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_connection_refused_is_transient(session: aiohttp.ClientSession, kind: HttpKind) -> None:
    channel = http_channel(kind, f"http://127.0.0.1:{closed_port()}", session)

    with pytest.raises(DeliveryError) as caught:
        await channel.send(alert(), TARGETS[kind])
    assert not caught.value.permanent and "cannot connect" in str(caught.value)


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_no_secret_in_errors_or_logs(
    fake_providers: FakeProviders,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    kind: HttpKind,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [TWILIO_TOKEN, TWILIO_SID] if kind != "push" else [NTFY_TOKEN]
    target = TARGETS[kind]
    # A provider careless enough to echo the credentials it was given, then the usual failures.
    echo = {"message": f"credentials {' / '.join(secrets)} are not allowed here", "code": 1}
    fake_providers.script(target, Reply(400, json=echo), Reply(500, json=echo), Reply(hang=True))
    channel = http_channel(kind, fake_providers.url, session, timeout=0.2)
    errors: list[DeliveryError] = []
    for _ in range(3):
        with pytest.raises(DeliveryError) as caught:
            await channel.send(alert(), target)
        errors.append(caught.value)
    await channel.send(alert(), target)
    for wrong in (
        http_channel(kind, fake_providers.url, session, secret=secrets[0] + "x"),
        http_channel(kind, f"http://127.0.0.1:{closed_port()}", session),
    ):
        with pytest.raises(DeliveryError) as caught:
            await wrong.send(alert(), target)
        errors.append(caught.value)

    assert "credentials *** " in str(errors[0])  # the echo is kept, the secret blanked
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for secret in secrets:
        assert all(secret not in str(error) for error in errors)
        assert secret not in logged


# -- EMAIL --------------------------------------------------------------------------------------


async def test_email_sends_text_and_html(smtp_server: SmtpServer) -> None:
    message = alert()
    receipt = await EmailChannel(smtp_settings(smtp_server)).send(message, "oncall@example.com")

    [email] = smtp_server.messages
    assert email["Subject"] == message.subject
    assert email["From"] == "alerts@monoduty.test"
    assert email["To"] == "oncall@example.com"
    assert email["X-Monoduty-Alert-Id"] == message.alert_id
    assert email["Message-ID"] == receipt.provider_id
    assert parsedate_to_datetime(email["Date"]) is not None
    text = email.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert message.title in text and message.body in text and "prometheus" in text
    html = email.get_body(("html",)).get_content()
    assert "&lt;lagging&gt; &amp; failing" in html and "<lagging>" not in html


async def test_email_subject_may_be_non_ascii(smtp_server: SmtpServer) -> None:
    message = alert(title="Réplica caída 🔥")
    await EmailChannel(smtp_settings(smtp_server)).send(message, "oncall@example.com")

    assert smtp_server.messages[0]["Subject"] == "[CRITICAL] Réplica caída 🔥"


async def test_email_logs_in_when_a_username_is_set(smtp_server: SmtpServer) -> None:
    settings = smtp_settings(smtp_server, username=SMTP_USERNAME, password=SMTP_PASSWORD)
    await EmailChannel(settings).send(alert(), "oncall@example.com")

    assert len(smtp_server.messages) == 1


async def test_email_wrong_password_is_permanent(smtp_server: SmtpServer) -> None:
    settings = smtp_settings(smtp_server, username=SMTP_USERNAME, password="wrong-password")

    with pytest.raises(DeliveryError) as caught:
        await EmailChannel(settings).send(alert(), "oncall@example.com")
    assert caught.value.permanent and "authentication failed" in str(caught.value)
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 No such user here", True), ("451 4.3.0 Mailbox busy, try later", False)],
)
async def test_email_recipient_refusal(smtp_server: SmtpServer, reply: str, permanent: bool) -> None:
    smtp_server.refuse("gone@example.com", reply)

    with pytest.raises(DeliveryError) as caught:
        await EmailChannel(smtp_settings(smtp_server)).send(alert(), "gone@example.com")
    assert caught.value.permanent is permanent
    assert str(caught.value) == f"SMTP server refused the recipient: {reply}"


async def test_email_connection_refused_is_transient() -> None:
    settings = SmtpSettings("127.0.0.1", closed_port(), None, None, "none", "alerts@monoduty.test")

    with pytest.raises(DeliveryError) as caught:
        await EmailChannel(settings).send(alert(), "oncall@example.com")
    assert not caught.value.permanent and "cannot connect" in str(caught.value)


async def test_email_silent_server_is_a_transient_timeout(silent_server: int) -> None:
    settings = SmtpSettings(
        "127.0.0.1", silent_server, None, None, "none", "alerts@monoduty.test", timeout=0.2
    )

    with pytest.raises(DeliveryError) as caught:
        await EmailChannel(settings).send(alert(), "oncall@example.com")
    assert not caught.value.permanent


@pytest.fixture(scope="module")
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts from a throwaway CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_email_over_tls_with_login(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], tls: str) -> None:
    server_context, client_context = tls_pair
    with SmtpServer(tls=tls, cert=server_context) as server:  # type: ignore[arg-type]
        settings = smtp_settings(server, tls=tls, username=SMTP_USERNAME, password=SMTP_PASSWORD)
        await EmailChannel(settings, tls_context=client_context).send(alert(), "oncall@example.com")

        assert len(server.messages) == 1


async def test_email_refuses_to_skip_starttls(smtp_server: SmtpServer) -> None:
    settings = smtp_settings(smtp_server, tls="starttls", username=SMTP_USERNAME, password=SMTP_PASSWORD)

    with pytest.raises(DeliveryError) as caught:
        await EmailChannel(settings).send(alert(), "oncall@example.com")
    assert caught.value.permanent and "STARTTLS" in str(caught.value)
    assert smtp_server.messages == []


async def test_email_no_secret_in_errors_or_logs(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_server.refuse("busy@example.com", "451 4.3.0 Try again later")
    good = smtp_settings(smtp_server, username=SMTP_USERNAME, password=SMTP_PASSWORD)
    await EmailChannel(good).send(alert(), "oncall@example.com")
    errors: list[DeliveryError] = []
    attempts: list[tuple[SmtpSettings, str]] = [
        (good, "busy@example.com"),
        (replace(good, password=SMTP_PASSWORD + "x"), "oncall@example.com"),
        (replace(good, port=closed_port()), "oncall@example.com"),
        (replace(good, tls="starttls"), "oncall@example.com"),
    ]
    for settings, target in attempts:
        with pytest.raises(DeliveryError) as caught:
            await EmailChannel(settings).send(alert(), target)
        errors.append(caught.value)

    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert all(SMTP_PASSWORD not in str(error) for error in errors)
    assert SMTP_PASSWORD not in logged


# -- the registry -------------------------------------------------------------------------------


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
        (Settings(smtp=SMTP, twilio=TWILIO, ntfy=NTFY), set(CHANNEL_TYPES)),
        (Settings(dev=True), set(CHANNEL_TYPES)),
    ],
)
async def test_configured_types_and_build_channels_agree(
    session: aiohttp.ClientSession, settings: Settings, expected: set[str]
) -> None:
    made: list[str] = []

    def outbox(kind: str) -> Channel:
        made.append(kind)
        return EmailChannel(SMTP)  # any channel will do: only the factory calls matter here

    assert configured_types(settings) == expected
    channels = build_channels(settings, session, outbox_factory=outbox)
    assert set(channels) == expected
    if settings.outbox:
        assert sorted(made) == sorted(CHANNEL_TYPES)
    else:
        assert made == [] and all(channel.type == kind for kind, channel in channels.items())


async def test_outbox_mode_needs_a_factory(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="outbox_factory"):
        build_channels(Settings(dev=True), session)


def test_the_readme_documents_every_channel_setting() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for spec in CHANNELS:
        assert all(f"`{name}`" in readme for name in spec.settings), spec.type
