"""The channel registry: every channel Monoduty can deliver on, declared once.

Adding a channel = one module in this package, one ``Spec`` line in ``CHANNELS`` and one test file.
Everything else derives from this table: the type list (API enum, report columns), the
``targetChannels`` keys and their checks, which types this server can deliver, how each channel is
built (the dev outbox included) and which contact of a user is a channel's default target.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from engine.channels import egress
from engine.channels.apprise import AppriseChannel, validate_apprise_url
from engine.channels.apprise import host_of as apprise_host
from engine.channels.apprise import mask as mask_apprise_url
from engine.channels.base import Channel
from engine.channels.call import CallChannel
from engine.channels.discord import DiscordChannel
from engine.channels.email import EmailChannel
from engine.channels.formats import (
    TargetError,
    url_host,
    validate_email,
    validate_phone,
    validate_topic,
    validate_url,
)
from engine.channels.matrix import MatrixChannel, validate_room_id
from engine.channels.push import PushChannel
from engine.channels.slack import SlackChannel
from engine.channels.sms import SmsChannel
from engine.channels.teams import TeamsChannel
from engine.channels.telegram import TelegramChannel, validate_chat_id
from engine.channels.webhook import WebhookChannel
from engine.masking import mask_target
from engine.settings import Settings


class Validator(Protocol):
    """Checks one target and returns it normalised; raises ``TargetError`` naming ``field``."""

    def __call__(self, value: object, *, field: str) -> str: ...


@dataclass(frozen=True)
class Spec:
    """What one channel declares; the rest of the code reads these, never a list of its own."""

    type: str  # EMAIL: notificationTypes (API), deliveries.channel and outbox.channel (SQL)
    key: str  # email: its target list in targetChannels (API) and webhooks.targets (SQL)
    validate: Validator  # how a target is checked and normalised
    contact: str | None  # the User attribute that is the default target, None for no default
    settings: tuple[str, ...]  # the MONODUTY_* variables that configure its provider
    # Its provider's settings, or None while they are not set (then it cannot deliver, outside dev).
    provider: Callable[[Settings], Any]
    # The channel, given what ``provider`` returned, the shared HTTP session and the provider timeout.
    build: Callable[[Any, aiohttp.ClientSession, float], Channel]
    # How a target is shown (API answers, the dashboard) when it is itself a credential; None: as is.
    mask: Callable[[str], str] | None = None
    # A program's endpoint, not a person: it hears every change of an incident (acknowledged and
    # resolved notices whatever the webhook's notifyOnResolve says), as its event types promise.
    every_event: bool = False
    # The host a target sends to, where it names one (a URL's), for the check where it is given.
    host: Callable[[str], str | None] | None = None


CHANNELS: tuple[Spec, ...] = (
    Spec(
        type="EMAIL", key="email", validate=validate_email, contact="email",
        settings=("MONODUTY_SMTP_HOST",), provider=lambda s: s.smtp,
        build=lambda smtp, session, timeout: EmailChannel(smtp),  # its timeout is in smtp
    ),
    Spec(
        type="SMS", key="sms", validate=validate_phone, contact="phone",
        settings=("MONODUTY_TWILIO_ACCOUNT_SID",), provider=lambda s: s.twilio, build=SmsChannel,
    ),
    Spec(
        type="PUSH_NOTIF", key="push", validate=validate_topic, contact="push_topic",
        settings=("MONODUTY_NTFY_URL",), provider=lambda s: s.ntfy, build=PushChannel,
    ),
    Spec(
        type="CALL", key="call", validate=validate_phone, contact="phone",
        settings=("MONODUTY_TWILIO_ACCOUNT_SID",), provider=lambda s: s.twilio and (s.twilio, s.public_url),
        # The public URL is where a call's menu posts the key pressed (engine.channels.call).
        build=lambda provider, session, timeout: CallChannel(provider[0], session, timeout, provider[1]),
    ),
    Spec(
        type="WEBHOOK", key="webhook", validate=validate_url, contact=None,
        settings=("MONODUTY_SECRET_KEY",), provider=lambda s: s.secret_key, build=WebhookChannel,
        every_event=True, host=url_host,
    ),
    Spec(
        type="SLACK", key="slack", validate=validate_url, contact=None,
        settings=(), provider=lambda s: True, build=SlackChannel, mask=mask_target,
        host=url_host,
    ),
    Spec(
        type="DISCORD", key="discord", validate=validate_url, contact=None,
        settings=(), provider=lambda s: True, build=DiscordChannel, mask=mask_target,
        host=url_host,
    ),
    Spec(
        type="TEAMS", key="teams", validate=validate_url, contact=None,
        settings=(), provider=lambda s: True, build=TeamsChannel, mask=mask_target,
        host=url_host,
    ),
    Spec(
        type="TELEGRAM", key="telegram", validate=validate_chat_id, contact=None,
        settings=("MONODUTY_TELEGRAM_BOT_TOKEN",), provider=lambda s: s.telegram, build=TelegramChannel,
    ),
    Spec(
        type="MATRIX", key="matrix", validate=validate_room_id, contact=None,
        settings=("MONODUTY_MATRIX_HOMESERVER_URL",), provider=lambda s: s.matrix, build=MatrixChannel,
    ),
    Spec(
        type="APPRISE", key="apprise", validate=validate_apprise_url, contact=None,
        settings=(), provider=lambda s: s, build=AppriseChannel, mask=mask_apprise_url,
        host=apprise_host,
    ),
)  # fmt: skip

CHANNEL_TYPES = tuple(spec.type for spec in CHANNELS)
# The key of each type's target list in a webhook's targetChannels (API) and targets (SQL).
TARGET_KEYS = {spec.type: spec.key for spec in CHANNELS}
# The types told of every acknowledge and resolve (engine.alerts.lifecycle.notice_channels).
EVENT_TYPES = tuple(spec.type for spec in CHANNELS if spec.every_event)
_BY_TYPE = {spec.type: spec for spec in CHANNELS}
_BY_KEY = {spec.key: spec for spec in CHANNELS}


def validate_target(kind: str, value: object, *, field: str) -> str:
    """One target of channel type ``kind`` (one of CHANNEL_TYPES), normalised by that channel's
    validator: what a contact method or an escalation step's channel target may be."""
    return _BY_TYPE[kind].validate(value, field=field)


def shown_target(kind: str, target: str) -> str:
    """``target`` of channel type ``kind`` as an answer or a page may show it (masked if a secret)."""
    spec = _BY_TYPE.get(kind)
    return spec.mask(target) if spec is not None and spec.mask is not None else target


def shown_targets(targets: object) -> object:
    """A webhook's ``{key: [target, ...]}`` with each secret target masked (anything else as is)."""
    if not isinstance(targets, dict):
        return targets
    return {key: [_shown_by_key(key, t) for t in values] if isinstance(values, list) else values
            for key, values in targets.items()}  # fmt: skip


def unmasked_targets(given: object, stored: object) -> object:
    """A webhook's new ``{key: target or [targets]}`` with each target given as it is shown (masked:
    what a client read back) replaced by the stored target it shows, so that sending back what was
    read keeps the credential instead of storing its mask. Anything else is left to the validators."""
    if not isinstance(given, dict) or not isinstance(stored, dict):
        return given

    def unmask(key: str, value: object) -> object:
        if not isinstance(value, str):
            return value
        known = {_shown_by_key(key, t): t for t in stored.get(key) or [] if isinstance(t, str)}
        return known.get(value, value)

    return {key: [unmask(key, v) for v in values] if isinstance(values, list) else unmask(key, values)
            for key, values in given.items()}  # fmt: skip


def _shown_by_key(key: str, target: object) -> object:
    spec = _BY_KEY.get(key)
    if spec is None or spec.mask is None or not isinstance(target, str):
        return target
    return spec.mask(target)


@dataclass(frozen=True)
class Deliverable:
    """What this server can deliver: the channel types it is configured for (``kind in it``,
    iterated as those types) and whether a target may name a private address
    (MONODUTY_ALLOW_PRIVATE_TARGETS). Where targets are given, it is passed as ``available``."""

    types: frozenset[str]
    allow_private: bool = False

    def __contains__(self, kind: object) -> bool:
        return kind in self.types

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)


def deliverable(settings: Settings) -> Deliverable:
    return Deliverable(frozenset(configured_types(settings)), settings.allow_private_targets)


def check_address(kind: str, target: str, *, field: str, available: Collection[str]) -> None:
    """Refuse a target of type ``kind`` whose host is an IP address the egress rule forbids
    (loopback, private, link-local, the metadata address...), unless ``available`` (a Deliverable)
    allows private targets; a plain collection of types allows none. Names pass: where they
    resolve is checked at each send (engine.channels.egress), the guard that counts; this one says
    so at once, to whoever typed it, with the field and the rule."""
    if isinstance(available, Deliverable) and available.allow_private:
        return
    spec = _BY_TYPE[kind]
    host = spec.host(target) if spec.host is not None else None
    if host is None:
        return
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return  # a name
    rule = egress.refusal(host)
    if rule is not None:
        raise TargetError(
            field, f"is {rule} ({host}); set {egress.ALLOW_SETTING}=on to allow private targets"
        )


def configured_types(settings: Settings) -> set[str]:
    """The channel types this server can deliver: all of them in outbox mode (dev), else those
    whose provider is configured."""
    if settings.outbox:
        return set(CHANNEL_TYPES)
    return {spec.type for spec in CHANNELS if spec.provider(settings) is not None}


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
    channels: dict[str, Channel] = {}
    for spec in CHANNELS:
        provider = spec.provider(settings)
        if provider is not None:
            channels[spec.type] = spec.build(provider, session, settings.provider_timeout)
    return channels


def default_targets(contacts: object) -> dict[str, str | None]:
    """Each target key's default for a user (``contacts``: anything with the contact attributes):
    the channels a user has a contact of their own for (email, phone, push topic); the others
    (chat rooms, URLs) have no per-user default, so they are not listed as empty ones."""
    return {spec.key: getattr(contacts, spec.contact) for spec in CHANNELS if spec.contact}
