"""Values the service signs and later takes back: a calendar feed's URL, and whatever else is
handed out as a URL that must not be guessed (MONODUTY_SECRET_KEY).

Each purpose signs with its own key derived from the secret, so a signature made for one purpose
never verifies for another. Signatures are HMAC-SHA256, cut to 160 bits, in URL-safe base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_BYTES = 20


def derive_key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), b"monoduty\x00" + purpose.encode(), hashlib.sha256).digest()


def sign(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(key: bytes, payload: str, signature: str) -> bool:
    """Whether ``signature`` is ``payload``'s (compared in constant time)."""
    return hmac.compare_digest(sign(key, payload).encode(), signature.encode("utf-8", "surrogateescape"))
