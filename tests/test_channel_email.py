"""Email over SMTP (plain, STARTTLS, TLS; AUTH), against a real local aiosmtpd server.

What it promises: the message reads well as text and HTML, the server's refusals come back as
permanent or transient delivery errors as retrying can help or not, TLS is never skipped once
asked for, and the SMTP password never shows up in an error or a log line.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import replace
from email.utils import parsedate_to_datetime

import pytest
import trustme

from engine.channels.base import ActionLinks, DeliveryError
from engine.channels.email import EmailChannel
from engine.settings import SmtpSettings
from tests.support.channels import alert, smtp_settings
from tests.support.providers import SMTP_PASSWORD, SMTP_USERNAME, SmtpServer, closed_port


async def test_email_sends_text_and_html(smtp_server: SmtpServer) -> None:
    message = alert()
    receipt = await EmailChannel(smtp_settings(smtp_server)).send(message, "oncall@example.com")

    [email] = smtp_server.messages
    assert email["Subject"] == message.subject
    assert email["From"] == "alerts@monoduty.test"
    assert email["To"] == "oncall@example.com"
    assert email["X-Monoduty-Alert-Id"] == message.alert_id
    assert email["Message-ID"] == receipt.provider_id
    # The accepting server's answer is the receipt: its queue id is how its logs know the email.
    assert receipt.reply == f"250 2.0.0 Ok: queued as {smtp_server.queue_ids[0]}"
    assert parsedate_to_datetime(email["Date"]) is not None
    text = email.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert message.title in text and message.body in text and "prometheus" in text
    html = email.get_body(("html",)).get_content()
    assert "&lt;lagging&gt; &amp; failing" in html and "<lagging>" not in html


async def test_email_with_action_links_offers_acknowledge_and_resolve_behind_a_confirmation(
    smtp_server: SmtpServer,
) -> None:
    page = "https://ops.example.org/a/payload.signature"
    actions = ActionLinks("payload.signature", page, f"{page}?action=acknowledge", f"{page}?action=resolve")
    await EmailChannel(smtp_settings(smtp_server)).send(alert(actions=actions), "oncall@example.com")

    [email] = smtp_server.messages
    text = email.get_body(("plain",)).get_content()
    assert f"Acknowledge: {actions.acknowledge}" in text and f"Resolve: {actions.resolve}" in text
    assert "asks you to confirm" in text
    html = email.get_body(("html",)).get_content()
    assert f'<a href="{actions.acknowledge}"><strong>Acknowledge</strong></a>' in html
    assert f'<a href="{actions.resolve}"><strong>Resolve</strong></a>' in html
    assert "asks you to confirm" in html


async def test_email_without_action_links_has_none(smtp_server: SmtpServer) -> None:
    await EmailChannel(smtp_settings(smtp_server)).send(alert(), "oncall@example.com")

    assert "Acknowledge" not in smtp_server.messages[0].get_body(("plain",)).get_content()


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
