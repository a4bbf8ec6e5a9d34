"""Open SMTP connections kept for the next email (one worker process's), per SMTP server.

A new connection costs a TCP handshake, the greeting, EHLO, STARTTLS or TLS and a login: several
round trips and a TLS handshake per email, more than the email itself. After a send that went
well its connection waits here, and the next send to the same server (host, port, TLS mode, user)
takes it. Kept connections are bounded (the worker's per-channel send slots: at most that many
sends at once, workers/channel_slots.py); one left unused longer than ``idle_seconds`` is closed,
before the server's own idle timeout (Postfix 300 s, others less) or a NAT's can leave it dead.

A kept connection may have been closed by the server all the same (its idle timeout, a restart,
``421`` after its limit of messages per connection). :func:`EmailChannel.send
<engine.channels.email.EmailChannel.send>` then tries once more on a new connection, but only
when the failure came before the DATA command: until then the server cannot have taken the email.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from engine.settings import SmtpSettings

# Below every common server's idle timeout, above the gaps within a burst of alerts.
IDLE_SECONDS = 10.0
# A QUIT to a server that no longer answers must not hold a send (or the worker's shutdown) long.
QUIT_SECONDS = 2.0

Server = tuple[str, int, str, str | None]  # host, port, TLS mode, user


class Connection(aiosmtplib.SMTP):
    """aiosmtplib's client, telling whether DATA was started on it: until then no email can have
    been taken, so one that failed earlier may be sent again elsewhere."""

    data_started = False

    async def data(self, message: str | bytes, /, **kwargs: object) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        return await super().data(message, **kwargs)  # type: ignore[arg-type]


@dataclass
class _Kept:
    connection: Connection
    since: float  # when it was given back (the pool's clock)


def server_of(settings: SmtpSettings) -> Server:
    return (settings.host, settings.port, settings.tls, settings.username)


@dataclass
class SmtpConnections:
    """Connections to reuse, at most ``limit`` per server; ``limit`` 0 keeps none (one connection
    per email). One asyncio loop: no locks needed. ``clock`` is injected for tests."""

    limit: int
    idle_seconds: float = IDLE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _kept: dict[Server, list[_Kept]] = field(default_factory=dict)

    async def take(
        self, settings: SmtpSettings, tls_context: ssl.SSLContext | None
    ) -> tuple[Connection, bool]:
        """An open connection to ``settings``' server and whether it was kept from an earlier send
        (else it is new: connected, TLS set up and logged in). Raises what aiosmtplib raises."""
        kept = self._kept.get(server_of(settings), [])
        stale_before = self.clock() - self.idle_seconds
        while kept:
            entry = kept.pop()  # the most recently used: the others age out when not needed
            if entry.since >= stale_before and entry.connection.is_connected:
                entry.connection.data_started = False
                return entry.connection, True
            await quit_quietly(entry.connection)
        return await self.connect(settings, tls_context), False

    async def connect(self, settings: SmtpSettings, tls_context: ssl.SSLContext | None) -> Connection:
        connection = Connection(**client_options(settings, tls_context))
        await connection.connect()
        return connection

    async def give_back(self, settings: SmtpSettings, connection: Connection) -> None:
        """Keep a connection whose send went well for the next one (or QUIT it, if enough are kept)."""
        kept = self._kept.setdefault(server_of(settings), [])
        if len(kept) < self.limit and connection.is_connected:
            kept.append(_Kept(connection, self.clock()))
        else:
            await quit_quietly(connection)

    def kept(self) -> int:
        """How many connections wait for a send (all servers)."""
        return sum(len(kept) for kept in self._kept.values())

    async def close(self) -> None:
        """QUIT every kept connection (the worker's shutdown)."""
        kept = [entry.connection for entries in self._kept.values() for entry in entries]
        self._kept.clear()
        for connection in kept:
            await quit_quietly(connection)


async def quit_quietly(connection: Connection) -> None:
    """QUIT, or just close: a connection given up on has nothing more to say."""
    try:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            if connection.is_connected:
                await connection.quit(timeout=min(QUIT_SECONDS, connection.timeout or QUIT_SECONDS))
    finally:
        connection.close()


def failed_unsent(connection: Connection, exc: Exception) -> bool:
    """Whether a kept connection failed as a dead or closing one does, before DATA: the email
    cannot have been taken, and a new connection may well succeed."""
    if connection.data_started:
        return False
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421  # "closing transmission channel" (RFC 5321), e.g. too many messages
    return isinstance(exc, ConnectionError)  # aiosmtplib's SMTPServerDisconnected, a reset


def client_options(settings: SmtpSettings, tls_context: ssl.SSLContext | None) -> dict[str, Any]:
    """How aiosmtplib reaches the configured server: the same for a kept connection and a one-off send."""
    return {
        "hostname": settings.host,
        "port": settings.port,
        "username": settings.username,
        "password": settings.password,
        "use_tls": settings.tls == "tls",
        # "none" must mean none: aiosmtplib would otherwise upgrade when offered.
        "start_tls": settings.tls == "starttls",
        "tls_context": tls_context,
        "timeout": settings.timeout,
    }
