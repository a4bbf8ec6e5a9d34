"""APPRISE: any Apprise URL (Pushover, Gotify, Signal, WhatsApp, Zulip, Rocket.Chat, SNS... over
100 services) through the ``apprise`` package's async API.

Apprise answers only "sent" or "not sent", so a failure is transient: the one retry policy tries
again up to MONODUTY_MAX_ATTEMPTS. A URL no Apprise plugin reads is refused where it is given.

An Apprise URL holds its service's credentials, so it is a secret: ``mask`` shows it as Apprise's
own privacy form without the query (``mmost://chat.example.org:8065/a...z/``), and that is all an
API answer, a page of the dashboard or a log line shows (engine.channels.registry.shown_target).
Apprise's own log lines name the URLs they send to: its logger is kept out of ours.

Outbound addresses: Apprise sends with its own HTTP client, not engine.channels.http, so the
egress rule is applied before the send: when the URL names a host (a dotted name or an address:
json://, mmost://, gotify://, a self-hosted server), it is resolved and refused as egress refuses
(loopback, private, link-local, metadata) unless MONODUTY_ALLOW_PRIVATE_TARGETS is on. Unlike the
channels on the shared session, this is checked once before Apprise resolves again itself: a name
re-pointed in between (DNS rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import logging

import aiohttp
import apprise
from aiohttp.abc import AbstractResolver

from engine.channels import chat, egress
from engine.channels.base import DeliveryError, Message, Receipt
from engine.channels.formats import TargetError
from engine.settings import Settings

PROVIDER = "apprise"
NOTIFY_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "error": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
}
MAX_URL = 2048


def _plugin(url: str) -> apprise.NotifyBase | None:
    return apprise.Apprise.instantiate(url)


def validate_apprise_url(value: object, *, field: str = "url") -> str:
    """A URL one of Apprise's plugins reads (``pover://user@token``, ``mmosts://host/token``...)."""
    if not isinstance(value, str):
        raise TargetError(field, "must be a string")
    url = value.strip()
    if not url or len(url) > MAX_URL or "://" not in url or _plugin(url) is None:
        raise TargetError(
            field, "must be an Apprise URL (https://github.com/caronc/apprise/wiki), e.g. pover://user@token"
        )
    return url


def mask(url: str) -> str:
    """The URL as Apprise shows it with privacy on, without its query: no credential left."""
    plugin = _plugin(url)
    if plugin is None:
        return url.partition("://")[0] + "://***"
    return str(plugin.url(privacy=True)).partition("?")[0]


def host_of(url: str) -> str | None:
    """The host an Apprise URL sends to, where it names one (see _named_host)."""
    plugin = _plugin(url)
    return _named_host(plugin) if plugin is not None else None


def _named_host(plugin: apprise.NotifyBase) -> str | None:
    """The host the URL sends to, where it names one: an address, ``localhost`` or a dotted name.
    (Services at a fixed address, Pushover or Telegram, keep a token where the host would be.)"""
    host = getattr(plugin, "host", None)
    if not isinstance(host, str) or not host:
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        return host if "." in host or host == "localhost" else None


class AppriseChannel:
    """Notifies one Apprise URL with the page's title and text."""

    type = "APPRISE"

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        timeout: float,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.timeout = timeout
        self.guard = egress.GuardedResolver(resolver, allow_private=settings.allow_private_targets)
        # Apprise logs the URLs it posts to (credentials in them): none of it reaches our logs,
        # nor stderr (logging's last resort for a logger with no handler).
        apprise_log = logging.getLogger("apprise")
        apprise_log.propagate = False
        if not apprise_log.handlers:
            apprise_log.addHandler(logging.NullHandler())

    async def send(self, message: Message, target: str) -> Receipt:
        plugin = _plugin(target)
        if plugin is None:
            raise DeliveryError(f"{PROVIDER}: no Apprise plugin reads {mask(target)}", permanent=True)
        await self._check_host(plugin)
        notifier = apprise.Apprise()
        notifier.add(plugin)
        result = await notifier.async_notify(
            title=message.subject,
            body=render(message),
            notify_type=NOTIFY_TYPES.get(message.severity, apprise.NotifyType.INFO),
            body_format=apprise.NotifyFormat.TEXT,
            timeout=self.timeout,
        )
        if not result:
            raise DeliveryError(
                f"{PROVIDER}: {mask(target)} did not accept the notification", permanent=False
            )
        return Receipt()

    async def _check_host(self, plugin: apprise.NotifyBase) -> None:
        host = _named_host(plugin)
        if host is None:
            return
        try:
            if ":" in host or host.replace(".", "").isdigit():
                await self.guard.check_literal_host(host)
            else:
                await self.guard.resolve(host, int(getattr(plugin, "port", None) or 0))
        except egress.TargetRefused as exc:
            raise DeliveryError(f"{PROVIDER}: refused: {exc}", permanent=True) from None
        except OSError as exc:
            raise DeliveryError(
                f"{PROVIDER}: cannot resolve {host} ({exc.strerror or exc})", permanent=False
            ) from None


def render(message: Message) -> str:
    """Plain text: the message, the facts, then the links one a line."""
    lines = [chat.body(message), " · ".join(f"{k}: {v}" for k, v in chat.facts(message))]
    lines += [f"{label}: {url}" for label, url in chat.links(message)]
    return "\n".join(line for line in lines if line)
