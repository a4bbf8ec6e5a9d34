"""Signed inbound webhooks: a webhook with a signing secret accepts only signed alerts.

Two schemes are accepted, whichever the sender uses:

- Standard Webhooks (standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp`` (Unix
  seconds) and ``webhook-signature``, a space-separated list of ``v1,<base64 HMAC-SHA256>`` of
  ``"{id}.{timestamp}.{body}"``. The key is the secret read as the spec reads it: base64 after an
  optional ``whsec_`` prefix (padding optional, as the reference libraries allow). A prefix-less
  secret that is not base64 is used as its UTF-8 bytes, and so is a prefix-less one that is:
  Monoduty read every prefix-less secret that way before, and senders configured then must keep
  working. Both keys are the secret itself, written two ways, so accepting either gives a forger
  nothing. The timestamp must be within ``TOLERANCE`` of now. ``verify`` answers the webhook-id:
  the spec's idempotency key, which a retry keeps (engine/alerts/inbound.py answers a repeat with the
  first alert's id instead of queueing it again).
- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` keyed by the secret's
  UTF-8 text, as GitHub signs (hex digits in either case). GitHub sends no signed timestamp, so
  this scheme cannot refuse a replay; prefer Standard Webhooks where the sender offers it.

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

from engine import limits
from engine.errors import MonodutyError, ValidationError

TOLERANCE = 5 * 60
WHSEC = "whsec_"
MIN_SECRET_BYTES = 16
MAX_SECRET_CHARS = 200


class SignatureRejected(MonodutyError):
    status = 401
    code = "INVALID_SIGNATURE"


def parse_secret(value: object) -> str | None:
    """A webhook's signing secret as given (None removes it); the message never echoes it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("signing_secret must be a string or null", field="signing_secret")
    value = value.strip()
    if value.startswith(WHSEC):
        key = _base64(value.removeprefix(WHSEC))
        strong = key is not None and len(key) >= MIN_SECRET_BYTES
    else:
        strong = len(value.encode()) >= MIN_SECRET_BYTES
    if len(value) > MAX_SECRET_CHARS or not strong:
        raise ValidationError(
            f"signing_secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_CHARS} characters "
            f"(or whsec_ and base64 of at least {MIN_SECRET_BYTES} bytes)",
            field="signing_secret",
        )
    return value


def _base64(text: str) -> bytes | None:
    """Strict base64 (standard alphabet), padding optional; None if ``text`` is not that."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _standard_keys(secret: str) -> list[bytes]:
    """The HMAC keys a Standard Webhooks signature may use with ``secret`` (see the module doc)."""
    if secret.startswith(WHSEC):
        key = _base64(secret.removeprefix(WHSEC))
        return [key] if key else []
    key = _base64(secret)
    return [key, secret.encode()] if key else [secret.encode()]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A signature header's value; one with non-ASCII bytes (never valid here) counts as absent."""
    value = headers.get(name)
    return value.strip() if value and value.isascii() else None


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """Raise SignatureRejected unless the request is signed with ``secret`` by a known scheme.

    Answers the Standard Webhooks ``webhook-id`` (None for GitHub's scheme, which has none)."""
    if _header(headers, "webhook-signature") is not None:
        return _verify_standard(secret, headers, body)
    github = _header(headers, "X-Hub-Signature-256")
    if github is not None:
        scheme, _, digest = github.partition("=")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if scheme.lower() != "sha256" or not hmac.compare_digest(digest.lower().encode(), expected.encode()):
            raise SignatureRejected("X-Hub-Signature-256 does not match this webhook's secret")
        return None
    raise SignatureRejected(
        "this webhook requires signed requests (webhook-signature or X-Hub-Signature-256)",
        code="SIGNATURE_REQUIRED",
    )


def _verify_standard(secret: str, headers: Mapping[str, str], body: bytes) -> str:
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
    expected = [
        base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()) for key in _standard_keys(secret)
    ]
    given = [
        sig.encode() for version, _, sig in (p.partition(",") for p in signatures.split()) if version == "v1"
    ]
    # Every pair is compared (no early exit) so the time taken says nothing about which matched.
    matches = [hmac.compare_digest(g, e) for g in given for e in expected]
    if not any(matches):
        raise SignatureRejected("webhook-signature does not match this webhook's secret")
    return msg_id
