"""A worker's SMTP connections are kept open and reused, against a real local aiosmtpd server.

What it promises: emails share a connection, a kept connection the server closed (or that sat idle
too long) is replaced without losing or doubling the email, and an email the server may have taken
is never sent again blindly: it is reported as maybe sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from engine.channels.base import DeliveryError
from engine.channels.email import EmailChannel
from engine.channels.smtp_pool import IDLE_SECONDS, SmtpConnections
from engine.settings import Settings
from tests.support.channels import alert, smtp_settings
from tests.support.factories import Account, run_worker, send_alert
from tests.support.providers import SmtpServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def channel(smtp_server: SmtpServer, clock: Clock) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel(smtp_settings(smtp_server), connections=SmtpConnections(4, clock=clock))
    yield channel
    await channel.close()


def subjects(server: SmtpServer) -> list[str]:
    return [str(email["Subject"]) for email in server.messages]


async def test_emails_share_one_connection(smtp_server: SmtpServer, channel: EmailChannel) -> None:
    for n in range(5):
        await channel.send(alert(title=f"disk {n}"), "oncall@example.com")

    assert subjects(smtp_server) == [f"[CRITICAL] disk {n}" for n in range(5)]
    assert smtp_server.connections == 1


async def test_concurrent_emails_keep_no_more_connections_than_the_limit(smtp_server: SmtpServer) -> None:
    channel = EmailChannel(smtp_settings(smtp_server), connections=SmtpConnections(2))
    await asyncio.gather(*(channel.send(alert(), "oncall@example.com") for _ in range(5)))

    assert len(smtp_server.messages) == 5
    assert channel.connections.kept() == 2
    await channel.close()
    assert channel.connections.kept() == 0


async def test_a_connection_the_server_closed_is_replaced_and_the_email_sent_once(
    smtp_server: SmtpServer, channel: EmailChannel
) -> None:
    await channel.send(alert(title="first"), "oncall@example.com")
    smtp_server.drop_connections()  # its idle timeout, while the connection waited for an email

    await channel.send(alert(title="second"), "oncall@example.com")

    assert subjects(smtp_server) == ["[CRITICAL] first", "[CRITICAL] second"]
    assert smtp_server.connections == 2


async def test_a_connection_idle_past_the_limit_is_not_reused(
    smtp_server: SmtpServer, channel: EmailChannel, clock: Clock
) -> None:
    await channel.send(alert(), "oncall@example.com")
    clock.now += IDLE_SECONDS + 1

    await channel.send(alert(), "oncall@example.com")

    assert len(smtp_server.messages) == 2
    assert smtp_server.connections == 2


async def test_a_server_closing_a_kept_connection_with_421_gets_the_email_on_a_new_one(
    smtp_server: SmtpServer, channel: EmailChannel
) -> None:
    await channel.send(alert(title="first"), "oncall@example.com")
    smtp_server.refuse_next_mail("421 4.7.0 Too many messages on this connection, closing")

    await channel.send(alert(title="second"), "oncall@example.com")

    assert subjects(smtp_server) == ["[CRITICAL] first", "[CRITICAL] second"]
    assert smtp_server.connections == 2


async def test_a_421_on_a_new_connection_is_transient_and_not_retried_at_once(
    smtp_server: SmtpServer, channel: EmailChannel
) -> None:
    smtp_server.refuse_next_mail("421 4.3.2 Service shutting down")

    with pytest.raises(DeliveryError) as caught:
        await channel.send(alert(), "oncall@example.com")
    assert not caught.value.permanent and "421" in str(caught.value)
    assert smtp_server.mail_commands == 1 and smtp_server.messages == []


async def test_a_recipient_refused_on_a_kept_connection_is_permanent_and_tried_once(
    smtp_server: SmtpServer, channel: EmailChannel
) -> None:
    await channel.send(alert(), "oncall@example.com")
    smtp_server.refuse("gone@example.com", "550 5.1.1 No such user here")

    with pytest.raises(DeliveryError) as caught:
        await channel.send(alert(), "gone@example.com")
    assert caught.value.permanent and "550 5.1.1" in str(caught.value)
    assert smtp_server.mail_commands == 2  # one per email: the refused one was not tried again

    await channel.send(alert(), "oncall@example.com")
    assert len(smtp_server.messages) == 2


async def test_an_email_taken_before_the_connection_died_is_maybe_sent_and_not_resent(
    smtp_server: SmtpServer, channel: EmailChannel
) -> None:
    await channel.send(alert(title="first"), "oncall@example.com")
    smtp_server.die_after_next_data()

    with pytest.raises(DeliveryError) as caught:
        await channel.send(alert(title="second"), "oncall@example.com")
    assert caught.value.maybe_sent and not caught.value.permanent
    assert subjects(smtp_server) == ["[CRITICAL] first", "[CRITICAL] second"]  # taken once, not again
    assert smtp_server.mail_commands == 2

    await channel.send(alert(title="third"), "oncall@example.com")
    assert subjects(smtp_server)[-1] == "[CRITICAL] third"


async def test_a_worker_keeps_its_connection_and_quits_it_when_it_stops(
    live: TestClient, account: Account, provider_settings: Settings, smtp_server: SmtpServer
) -> None:
    await send_alert(live, account)

    await run_worker(provider_settings)

    assert len(smtp_server.messages) == 1
    assert smtp_server.connections == 1 and smtp_server.quits == 1
