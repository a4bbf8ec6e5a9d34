"""The one interface every channel implements.

    DeliveryError            raised by Channel.send; never retried inside a channel
     ├─ permanent=True       invalid target, 4xx: the delivery fails at once
     └─ permanent=False      timeout, refused connection, 5xx, 429: the retry policy decides
                             (retry_after carries a provider's Retry-After, in seconds)

Channels classify, they never retry and never record: the deliver job does both, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

SEVERITIES = ("critical", "error", "warning", "info")
# The deliveries that tell of a change of an incident (engine.alerts.lifecycle.DeliveryKind), not page.
NOTICE_KINDS = ("resolved", "acknowledged")
# A repeat alert that paged nobody, told to programs (WEBHOOK's ``alert.received``).
RECEIVED_KIND = "alert_received"


@dataclass(frozen=True)
class ActionLinks:
    """The signed URLs of one message's actions (engine.incidents.channel_actions): ``page`` shows
    the incident(s) with a button per action (GET changes nothing), ``acknowledge`` and
    ``resolve`` act when POSTed to; ``token`` is the grant itself, for callbacks (a call's keys)."""

    token: str
    page: str
    acknowledge: str
    resolve: str


@dataclass(frozen=True)
class ReplyCode:
    """What a person texts back to act on an SMS page (engine.incidents.sms_codes): ``code`` then
    ``a`` to acknowledge or ``c`` to close; ``incidents`` is how many the message is about (a
    bundle's code acts on all of them)."""

    code: int
    incidents: int = 1


@dataclass(frozen=True)
class Message:
    """What one alert says, as every channel renders it."""

    alert_id: str
    webhook_name: str
    title: str
    body: str
    severity: str  # one of SEVERITIES
    source: str | None
    received_at: datetime
    is_test: bool = False
    links: tuple[str, ...] = ()  # http(s) URLs the sender linked (PagerDuty ``links``), first = most useful
    number: int | None = None  # the incident's per-owner number; None for a test send or a bundle
    actions: ActionLinks | None = None  # where the recipient acknowledges or resolves from the message
    reply: ReplyCode | None = None  # SMS: the code a reply names to act on the message
    # Where the provider reports what became of it (Twilio's StatusCallback: engine.alerts.receipts).
    status_callback: str | None = None
    # The delivery this message is one attempt of: the same on every retry, so channels whose
    # protocol dedupes by an id (Standard Webhooks' webhook-id, Matrix's txnId) send it as that id.
    delivery_id: str | None = None
    # The incident's page on the dashboard (the incidents list for a bundle); None without a public URL.
    incident_url: str | None = None
    # Whose target this is (the person paged, else the webhook's maker): scopes per-owner secrets.
    recipient_id: str | None = None
    # What the delivery is (engine.alerts.lifecycle.DeliveryKind): page, bundle, digest, or a notice.
    kind: str = "page"
    # The incident it is about (its id and status when the attempt started); None for a bundle or a test send.
    incident_id: str | None = None
    incident_status: str | None = None
    # The alert's details (labels, annotations, custom details), masked (engine.masking.mask_value):
    # only an ``alert.received`` notice carries them; None elsewhere.
    details: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        """One line for subjects, SMS and push titles: ``[CRITICAL] #42 DB down``, ``[TEST] [INFO] x``.

        The number comes before the title so that a cut title (push titles, long subjects) still
        names the incident a reply or the dashboard can find."""
        prefix = "[TEST] " if self.is_test else ""
        # A notice's title names the number already ("RESOLVED #42: DB down").
        shown = self.number is not None and self.kind not in NOTICE_KINDS
        number = f"#{self.number} " if shown else ""
        return f"{prefix}[{self.severity.upper()}] {number}{self.title}"


@dataclass(frozen=True)
class Receipt:
    """What the provider answered: its id for the message, if it gave one, and its own words when
    they say more (an SMTP server's 250 reply, with its queue id)."""

    provider_id: str | None = None
    reply: str | None = None


class DeliveryError(Exception):
    """A send failed. The message is safe to store and show: no secret, no full credential."""

    def __init__(
        self, message: str, *, permanent: bool, retry_after: float | None = None, maybe_sent: bool = False
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        # The provider may have taken the message all the same (no answer in time, the connection
        # lost after the request went): the retry is recorded as possibly duplicated.
        self.maybe_sent = maybe_sent


class Channel(Protocol):
    """Sends one message to one target (an address, a number, a topic)."""

    type: str  # one of registry.CHANNEL_TYPES

    async def send(self, message: Message, target: str) -> Receipt: ...
