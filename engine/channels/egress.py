"""Where outbound HTTP may go: the server-side request forgery guard of every provider call.

A user can now give a URL as a target (a WEBHOOK receiver, a Slack or Discord webhook...). Left
alone, such a target could make a worker POST to the cloud metadata service (169.254.169.254),
to the database's admin port on localhost, or to any service on the private network. So the one
HTTP session the channels share (``client_session``) refuses, **at send time and after DNS
resolution**, any address that is loopback, link-local (the metadata address among them),
private, shared (CGNAT), multicast, reserved or unspecified:

- a host name is resolved by ``GuardedResolver``, which hands the connector only the addresses
  that pass: what is checked is exactly what is connected to, so a name that resolves to a public
  address at creation and to 10.0.0.5 at send time (DNS rebinding) is still refused;
- an address literal never reaches a resolver (aiohttp connects to it directly), so it is checked
  when the request starts (a ``TraceConfig`` hook), before any connection is opened.

Exempt: ``MONODUTY_ALLOW_PRIVATE_TARGETS=on`` (self-hosters whose chat server is on their LAN, and
the tests), and the host and port of each provider URL the operator configured (a Twilio-compatible
gateway, an ntfy server or a Matrix homeserver on the LAN): configuration, not user input.
Redirects are never followed (engine.channels.http), so a public target cannot bounce a request
inward either.

A refusal is ``TargetRefused`` (an OSError, which is how aiohttp passes a resolver's failure on);
engine.channels.http turns it into a permanent delivery error naming the rule.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from engine.settings import Settings

ALLOW_SETTING = "MONODUTY_ALLOW_PRIVATE_TARGETS"
# The cloud metadata services (AWS, GCP, Azure, OpenStack; AWS's IPv6 one): named apart because
# they hand out credentials, the commonest prize of a forged request.
METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in all but name


class TargetRefused(OSError):
    """An outbound address the guard refuses; the message names the host, the address and the rule."""


def refusal(address: str) -> str | None:
    """Why ``address`` (an IP address) may not be sent to, or None when it is a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip in METADATA:
        return "a cloud metadata address"
    for rule, matches in (
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("an unspecified address", ip.is_unspecified),
        ("a multicast address", ip.is_multicast),
        ("a shared (CGNAT) address", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved or not ip.is_global),
    ):
        if matches:
            return rule
    return None


def refused(host: str, address: str, rule: str) -> TargetRefused:
    where = host if host == address else f"{host} ({address})"
    return TargetRefused(f"{where} is {rule}; set {ALLOW_SETTING}=on to allow private targets")


class GuardedResolver(AbstractResolver):
    """A resolver that answers only the addresses outbound requests may use.

    ``inner`` does the lookup (aiohttp's default resolver; tests inject one with a fixed answer).
    ``trusted`` are (host, port) pairs sent to without a check (the operator's provider URLs)."""

    def __init__(
        self,
        inner: AbstractResolver | None = None,
        *,
        allow_private: bool = False,
        trusted: frozenset[tuple[str, int]] = frozenset(),
    ) -> None:
        self.inner = inner or aiohttp.DefaultResolver()
        self.allow_private = allow_private
        self.trusted = trusted

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        if self.allow_private or (host.lower().rstrip("."), port) in self.trusted:
            return answers
        if not answers:
            raise OSError(f"{host} has no address")
        allowed = [a for a in answers if refusal(a["host"]) is None]
        if not allowed:
            first = answers[0]["host"]
            raise refused(host, first, refusal(first) or "refused")
        return allowed

    async def close(self) -> None:
        await self.inner.close()

    async def check_literal(self, url: URL) -> None:
        """Refuse a URL whose host is an IP address the rule forbids (no resolver sees those)."""
        await self.check_literal_host((url.host or "").lower(), url.port or 0)

    async def check_literal_host(self, host: str, port: int = 0) -> None:
        """Refuse ``host`` if it is an IP address the rule forbids; a name passes (see resolve)."""
        try:
            ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return  # a name: resolve() checks what it resolves to
        if self.allow_private or (host, port) in self.trusted:
            return
        rule = refusal(host)
        if rule is not None:
            raise refused(host, host, rule)


def trusted_hosts(settings: Settings) -> frozenset[tuple[str, int]]:
    """The (host, port) of every provider URL the operator configured."""
    return frozenset(_host_port(url) for url in _provider_urls(settings))


def _provider_urls(settings: Settings) -> Iterable[str]:
    if settings.twilio is not None:
        yield settings.twilio.base_url
    if settings.ntfy is not None:
        yield settings.ntfy.url
    if settings.telegram is not None:
        yield settings.telegram.base_url
    if settings.matrix is not None:
        yield settings.matrix.homeserver_url


def _host_port(url: str) -> tuple[str, int]:
    parsed = URL(url)
    return (parsed.host or "").lower().rstrip("."), parsed.port or 0


def client_session(
    settings: Settings,
    *,
    resolver: AbstractResolver | None = None,
    connector: type[aiohttp.TCPConnector] = aiohttp.TCPConnector,
    **options: Any,
) -> aiohttp.ClientSession:
    """The session every channel sends through, guarded as the module docstring says.

    ``resolver`` replaces the DNS lookup under the guard, ``connector`` the connector class (tests
    use both to answer with a chosen address and to fail on any connection off loopback)."""
    guard = GuardedResolver(
        resolver, allow_private=settings.allow_private_targets, trusted=trusted_hosts(settings)
    )

    async def on_request_start(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        await guard.check_literal(params.url)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return aiohttp.ClientSession(connector=connector(resolver=guard), trace_configs=[trace], **options)
