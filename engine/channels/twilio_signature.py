"""``X-Twilio-Signature``: how Twilio signs the requests it makes to us (voice ``<Gather>`` actions,
inbound SMS, status callbacks), and how we check one.

As Twilio documents it: the full URL it requested (scheme, host, path and query), then every POST
parameter name followed by its value, names sorted (case-sensitive; a name's repeated values in
order), HMAC-SHA1 keyed with the account's auth token, base64. A request whose signature does not
match is not from Twilio (or was altered) and changes nothing. The local Twilio stand-in in the
tests signs with ``signature`` too, over the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

HEADER = "X-Twilio-Signature"


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(name + value for name, value in sorted(params, key=lambda p: (p[0], p[1])))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def is_valid(auth_token: str, url: str, params: Iterable[tuple[str, str]], given: str | None) -> bool:
    """Whether ``given`` (the header, None when absent) signs this request (constant-time compare)."""
    if not given:
        return False
    return hmac.compare_digest(signature(auth_token, url, params).encode(), given.encode("utf-8", "replace"))
