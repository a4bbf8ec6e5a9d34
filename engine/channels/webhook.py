"""Outbound webhooks signed per the Standard Webhooks spec (standardwebhooks.com).

One JSON POST per delivery: ``{"type", "timestamp", "data"}`` with the event type
``incident.triggered`` (a page of an incident, a bundle, a digest), ``incident.acknowledged`` and
``incident.resolved`` (the notices, which WEBHOOK targets are always sent:
engine.alerts.lifecycle.notice_channels) or ``alert.received`` (a repeat that joined an open
incident and paged nobody, as Grafana OnCall reports a new alert in a group; or a test send, in
no incident). ``data.incident`` names the incident (id, number, status, URL); an
``alert.received`` also carries the alert's masked ``details``. Headers:

- ``webhook-id``: ``msg_<delivery id>``, the same on every retry, so a receiver dedupes by it;
- ``webhook-timestamp``: Unix seconds of this attempt (receivers refuse old ones: replay guard);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.

The signing secret (``whsec_`` + base64 of 32 bytes) is **derived, never stored**:
HMAC-SHA256 of the owner's id and the target URL under a key derived from MONODUTY_SECRET_KEY
for this purpose alone (engine.auth.signing). Signing needs the secret itself, so a hash would
not do; deriving it means there is nothing to encrypt, back up or leak from the database, and
the API can show it to the owner when the target is created. Two owners of one URL get two
secrets (one cannot forge what the other's receiver accepts). Rotating it means a new target URL
(any query parameter will do) or a new MONODUTY_SECRET_KEY (which rotates every one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp

from engine.auth import signing
from engine.channels import http
from engine.channels.base import RECEIVED_KIND, DeliveryError, Message, Receipt
from engine.clock import SYSTEM, Clock

PROVIDER = "webhook"
PURPOSE = "outbound-webhook"
WHSEC = "whsec_"


def signing_secret(secret_key: str, owner_id: str, url: str) -> str:
    """The ``whsec_`` secret a target's receiver verifies with (see the module docstring)."""
    key = signing.derive_key(secret_key, PURPOSE)
    raw = hmac.new(key, f"{owner_id}\x00{url}".encode(), hashlib.sha256).digest()
    return WHSEC + base64.b64encode(raw).decode()


def signing_secrets(secret_key: str | None, owner_id: object, targets: object) -> dict[str, str]:
    """The secret of each URL in ``targets`` (a webhook's ``targets["webhook"]``), for the answer
    that sets them; none without MONODUTY_SECRET_KEY (then WEBHOOK is not configured anyway)."""
    if secret_key is None or not isinstance(targets, list):
        return {}
    return {url: signing_secret(secret_key, str(owner_id), url) for url in targets if isinstance(url, str)}


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one message."""
    key = base64.b64decode(secret.removeprefix(WHSEC))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def event_type(message: Message) -> str:
    if message.kind in ("resolved", "acknowledged"):  # base.NOTICE_KINDS
        return f"incident.{message.kind}"
    if message.kind == RECEIVED_KIND or (message.number is None and message.kind == "page"):
        return "alert.received"
    return "incident.triggered"


def payload(message: Message) -> dict[str, Any]:
    """The event: what the page says, the incident it is about, and where to act on it."""
    actions = message.actions
    return {
        "type": event_type(message),
        "timestamp": message.received_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "incident": {
                "id": message.incident_id,
                "number": message.number,
                "status": message.incident_status,
                "url": message.incident_url,
            },
            "alert_id": message.alert_id,
            "webhook_name": message.webhook_name,
            "title": message.title,
            "message": message.body,
            "severity": message.severity,
            "source": message.source,
            "links": list(message.links),
            "details": message.details,
            "is_test": message.is_test,
            "actions": None
            if actions is None
            else {"page": actions.page, "acknowledge": actions.acknowledge, "resolve": actions.resolve},
        },
    }


class WebhookChannel:
    """POSTs the signed event to the target URL."""

    type = "WEBHOOK"

    def __init__(
        self, secret_key: str, session: aiohttp.ClientSession, timeout: float, clock: Clock = SYSTEM
    ) -> None:
        self.secret_key = secret_key
        self.session = session
        self.timeout = timeout
        self.clock = clock

    async def send(self, message: Message, target: str) -> Receipt:
        """POST one signed event; the receipt holds its webhook-id."""
        if message.delivery_id is None or message.recipient_id is None:
            raise DeliveryError("webhook: a message without a delivery cannot be signed", permanent=True)
        msg_id = f"msg_{message.delivery_id}"
        timestamp = int(self.clock.now().timestamp())
        body = json.dumps(payload(message), separators=(",", ":")).encode()
        secret = signing_secret(self.secret_key, message.recipient_id, target)
        await http.post(
            self.session,
            target,
            provider=PROVIDER,
            data=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, msg_id, timestamp, body),
            },
            secrets=(secret,),
            timeout=self.timeout,
        )
        return Receipt(provider_id=msg_id)
