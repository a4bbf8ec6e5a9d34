"""The channel registry: which channel types exist, where their targets live, how each is built.

Adding a channel = one module in this package, one line in ``base.CHANNEL_TYPES`` / ``base.TARGET_KEYS``
and one branch in ``build_channels``.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from engine.channels.base import CHANNEL_TYPES, TARGET_KEYS, Channel, DeliveryError, Message, Receipt
from engine.channels.call import CallChannel
from engine.channels.email import EmailChannel
from engine.channels.push import PushChannel
from engine.channels.sms import SmsChannel
from engine.settings import Settings

__all__ = [
    "CHANNEL_TYPES",
    "TARGET_KEYS",
    "Channel",
    "DeliveryError",
    "Message",
    "Receipt",
    "build_channels",
    "configured_types",
]


def configured_types(settings: Settings) -> set[str]:
    """The channel types this server can deliver: all of them in outbox mode (dev), else those
    whose provider is configured."""
    if settings.outbox:
        return set(CHANNEL_TYPES)
    available = set()
    if settings.smtp is not None:
        available.add("EMAIL")
    if settings.twilio is not None:
        available |= {"SMS", "CALL"}
    if settings.ntfy is not None:
        available.add("PUSH_NOTIF")
    return available


def build_channels(
    settings: Settings,
    session: aiohttp.ClientSession,
    outbox_factory: Callable[[str], Channel] | None = None,
) -> dict[str, Channel]:
    """One channel per usable type, keyed by type. In outbox mode every type is
    ``outbox_factory(type)`` and nothing leaves the machine."""
    if settings.outbox:
        if outbox_factory is None:
            raise ValueError("outbox mode needs an outbox_factory")
        return {kind: outbox_factory(kind) for kind in CHANNEL_TYPES}
    timeout = settings.provider_timeout
    channels: dict[str, Channel] = {}
    if settings.smtp is not None:
        channels["EMAIL"] = EmailChannel(settings.smtp)
    if settings.twilio is not None:
        channels["SMS"] = SmsChannel(settings.twilio, session, timeout)
        channels["CALL"] = CallChannel(settings.twilio, session, timeout)
    if settings.ntfy is not None:
        channels["PUSH_NOTIF"] = PushChannel(settings.ntfy, session, timeout)
    return channels
