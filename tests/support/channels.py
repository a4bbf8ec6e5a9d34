"""What the per-channel test files (tests/test_channel_<kind>.py) share.

- ``alert()``: a sample Message with text that needs escaping, changed field by field;
  ``smtp_settings(server)``: plain SMTP to a local SmtpServer.
- ``HttpChannelContract``: what every channel that calls an HTTP provider promises: a 5xx or 429
  is transient (with the provider's Retry-After), another 4xx is permanent and says why, wrong
  credentials are permanent, no answer in time or no connection is transient, and no credential
  ever shows up in an error or a log line. A channel's test file runs it by subclassing it as
  ``class TestContract(HttpChannelContract)`` and saying how to build the channel; this module is
  not a test module, so the base class itself is never collected.

The fixtures used here (``fake_providers``, ``http_session``) are in tests/conftest.py.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import ClassVar

import aiohttp
import pytest

from engine.channels.base import Channel, DeliveryError, Message
from engine.settings import SmtpSettings
from tests.support.providers import FakeProviders, Reply, SmtpServer, closed_port

# The sender number every Twilio-backed channel under test sends from.
FROM_NUMBER = "+14155550199"


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


def smtp_settings(server: SmtpServer, **changes: object) -> SmtpSettings:
    """Plain SMTP to ``server``, no login, with ``changes`` applied."""
    settings = SmtpSettings(
        host=server.host,
        port=server.port,
        username=None,
        password=None,
        tls="none",
        from_addr="alerts@monoduty.test",
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


class HttpChannelContract:
    """The failure contract of an HTTP channel, as test methods for a subclass to run."""

    target: ClassVar[str]  # a number or topic the fake providers accept
    provider: ClassVar[str]  # how errors name the provider: "twilio answered 500"
    secrets: ClassVar[tuple[str, ...]]  # the credentials that must never leak; the first is the one
    # ``channel(secret=...)`` replaces

    def channel(
        self, url: str, session: aiohttp.ClientSession, *, timeout: float = 5.0, secret: str | None = None
    ) -> Channel:
        """The channel pointed at ``url``; ``secret`` replaces its credential."""
        raise NotImplementedError

    async def test_server_error_is_transient_and_the_next_attempt_can_succeed(
        self, fake_providers: FakeProviders, http_session: aiohttp.ClientSession
    ) -> None:
        channel = self.channel(fake_providers.url, http_session)
        fake_providers.script(self.target, Reply(500), Reply(503))

        for status in (500, 503):
            with pytest.raises(DeliveryError) as caught:
                await channel.send(alert(), self.target)
            assert not caught.value.permanent and caught.value.retry_after is None
            assert f"{self.provider} answered {status}" in str(caught.value)
        assert (await channel.send(alert(), self.target)).provider_id
        assert len(fake_providers.requests) == 3

    async def test_rate_limit_is_transient_with_retry_after(
        self, fake_providers: FakeProviders, http_session: aiohttp.ClientSession
    ) -> None:
        fake_providers.script(self.target, Reply(429, headers={"Retry-After": "7"}))

        with pytest.raises(DeliveryError) as caught:
            await self.channel(fake_providers.url, http_session).send(alert(), self.target)
        assert not caught.value.permanent
        assert caught.value.retry_after == 7.0

    async def test_bad_request_is_permanent_and_says_why(
        self, fake_providers: FakeProviders, http_session: aiohttp.ClientSession
    ) -> None:
        refusal = {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}
        fake_providers.script(self.target, Reply(400, json=refusal))

        with pytest.raises(DeliveryError) as caught:
            await self.channel(fake_providers.url, http_session).send(alert(), self.target)
        assert caught.value.permanent
        assert str(caught.value) == (
            f"{self.provider} answered 400: The 'To' number is not a valid phone number. (code 21211)"
        )

    async def test_wrong_credentials_are_permanent(
        self, fake_providers: FakeProviders, http_session: aiohttp.ClientSession
    ) -> None:
        channel = self.channel(fake_providers.url, http_session, secret="not-the-right-one")

        with pytest.raises(DeliveryError) as caught:
            await channel.send(alert(), self.target)
        assert caught.value.permanent and "answered 401" in str(caught.value)
        assert fake_providers.requests == []

    async def test_no_answer_in_time_is_transient(
        self, fake_providers: FakeProviders, http_session: aiohttp.ClientSession
    ) -> None:
        fake_providers.script(self.target, Reply(hang=True))

        with pytest.raises(DeliveryError) as caught:
            await self.channel(fake_providers.url, http_session, timeout=0.2).send(alert(), self.target)
        assert not caught.value.permanent and "no answer within 0.2s" in str(caught.value)

    async def test_connection_refused_is_transient(self, http_session: aiohttp.ClientSession) -> None:
        channel = self.channel(f"http://127.0.0.1:{closed_port()}", http_session)

        with pytest.raises(DeliveryError) as caught:
            await channel.send(alert(), self.target)
        assert not caught.value.permanent and "cannot connect" in str(caught.value)

    async def test_no_secret_in_errors_or_logs(
        self,
        fake_providers: FakeProviders,
        http_session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        secrets = self.secrets
        # A provider careless enough to echo the credentials it was given, then the usual failures.
        echo = {"message": f"credentials {' / '.join(secrets)} are not allowed here", "code": 1}
        fake_providers.script(self.target, Reply(400, json=echo), Reply(500, json=echo), Reply(hang=True))
        channel = self.channel(fake_providers.url, http_session, timeout=0.2)
        errors: list[DeliveryError] = []
        for _ in range(3):
            with pytest.raises(DeliveryError) as caught:
                await channel.send(alert(), self.target)
            errors.append(caught.value)
        await channel.send(alert(), self.target)
        for wrong in (
            self.channel(fake_providers.url, http_session, secret=secrets[0] + "x"),
            self.channel(f"http://127.0.0.1:{closed_port()}", http_session),
        ):
            with pytest.raises(DeliveryError) as caught:
                await wrong.send(alert(), self.target)
            errors.append(caught.value)

        assert "credentials *** " in str(errors[0])  # the echo is kept, the secret blanked
        logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
        for secret in secrets:
            assert all(secret not in str(error) for error in errors)
            assert secret not in logged
