"""Signed inbound webhooks: a webhook with a signing secret accepts only signed alerts.

Two schemes are accepted, whichever the sender uses:

- Standard Webhooks (standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp`` (Unix
  seconds) and ``webhook-signature``, a space-separated list of ``v1,<base64 HMAC-SHA256>`` of
  ``"{id}.{timestamp}.{body}"``. A secret written ``whsec_<base64>`` is used as the bytes it
  encodes (the spec's form); any other secret as its UTF-8 bytes. The timestamp must be within
  ``TOLERANCE`` of now, and an id seen inside that time is a replay and refused.
- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` keyed by the secret's
  UTF-8 text, as GitHub signs. GitHub sends no signed timestamp, so this scheme cannot refuse a
  replay; prefer Standard Webhooks where the sender offers it.

The secret must be checkable without PostgreSQL, so the inbound token cache (Redis) carries it:
Redis must be protected like the database. It never appears in an API answer (only ``signed``)
or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from redis.asyncio import Redis

from engine import limits
from engine.errors import MonodutyError, ValidationError

TOLERANCE = 5 * 60
REPLAY_PREFIX = "monoduty:webhook-msg:"
WHSEC = "whsec_"
MIN_SECRET_BYTES = 16
MAX_SECRET_CHARS = 200


class SignatureRejected(MonodutyError):
    status = 401
    code = "INVALID_SIGNATURE"


def parse_secret(value: object) -> str | None:
    """A signing secret from a create/PATCH body (None removes it); the message never echoes it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("signingSecret must be a string or null", field="signingSecret")
    value = value.strip()
    if len(value) > MAX_SECRET_CHARS or len(_standard_key(value)) < MIN_SECRET_BYTES:
        raise ValidationError(
            f"signingSecret must be {MIN_SECRET_BYTES} to {MAX_SECRET_CHARS} characters "
            f"(or whsec_ and base64 of at least {MIN_SECRET_BYTES} bytes)",
            field="signingSecret",
        )
    return value


def _standard_key(secret: str) -> bytes:
    if secret.startswith(WHSEC):
        try:
            return base64.b64decode(secret.removeprefix(WHSEC), validate=True)
        except (binascii.Error, ValueError):
            return b""
    return secret.encode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A signature header's value; one with non-ASCII bytes (never valid here) counts as absent."""
    value = headers.get(name)
    return value.strip() if value and value.isascii() else None


async def verify(redis: Redis, webhook_id: str, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise SignatureRejected unless the request is signed with ``secret`` by a known scheme."""
    if _header(headers, "webhook-signature") is not None:
        await _verify_standard(redis, webhook_id, secret, headers, body)
        return
    github = _header(headers, "X-Hub-Signature-256")
    if github is not None:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(github.encode(), expected.encode()):
            raise SignatureRejected("X-Hub-Signature-256 does not match this webhook's secret")
        return
    raise SignatureRejected(
        "this webhook requires signed requests (webhook-signature or X-Hub-Signature-256)",
        code="SIGNATURE_REQUIRED",
    )


async def _verify_standard(
    redis: Redis, webhook_id: str, secret: str, headers: Mapping[str, str], body: bytes
) -> None:
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature") or ""
    if not msg_id or not stamp or len(msg_id) > 200:
        raise SignatureRejected("webhook-id and webhook-timestamp are required with webhook-signature")
    seconds = limits.digits(stamp)
    if seconds is None or abs(time.time() - seconds) > TOLERANCE:
        raise SignatureRejected(
            f"webhook-timestamp is more than {TOLERANCE} seconds from now", code="STALE_SIGNATURE"
        )
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(_standard_key(secret), signed, hashlib.sha256).digest())
    given = [part.partition(",") for part in signatures.split()]
    if not any(v == "v1" and hmac.compare_digest(sig.encode(), expected) for v, _, sig in given):
        raise SignatureRejected("webhook-signature does not match this webhook's secret")
    # Only a correctly signed id is remembered, so nobody can burn ids ahead of the sender.
    # Kept twice the tolerance: a timestamp may be up to TOLERANCE in the future as well.
    digest = hashlib.sha256(msg_id.encode()).hexdigest()[:40]
    if not await redis.set(f"{REPLAY_PREFIX}{webhook_id}:{digest}", "1", nx=True, ex=2 * TOLERANCE):
        raise SignatureRejected("this webhook-id was already received", code="REPLAYED_SIGNATURE")
