"""The formats a channel target takes: an email address, an E.164 phone number, an ntfy topic, a URL.

Each validator returns the normalised form (idempotent: stored values pass again) or raises a
``TargetError`` naming the field. Webhook targets and a user's own contacts
share them, so a user's default target is always one a webhook would accept.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from engine.errors import ValidationError

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ASCII digits: Python's \d also matches other scripts' digits
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")  # ntfy's own topic rule
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")


class TargetError(ValidationError, ValueError):
    """A target that cannot be used; ``field`` names it. A ValidationError
    like every other bad field (a 400 naming the field), and a ValueError for plain callers."""

    field: str

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}", field=field)


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TargetError(field, "must be a string")
    return value.strip()


def validate_email(value: object, *, field: str = "email") -> str:
    """A deliverable-looking address, domain lowercased (and an IDN domain in its ASCII form).

    Pragmatic rather than RFC 5321 complete: no quoted local parts, no IP-literal domains, no
    display names ("Bob <bob@x.org>"); those are far likelier typos than real addresses.
    """
    address = _string(value, field)
    problem = "must be an email address like alice@example.com"
    if not address or len(address) > 254 or any(c.isspace() for c in address) or address.count("@") != 1:
        raise TargetError(field, problem)
    local, domain = address.split("@")
    try:
        # The idna codec lowercases too; ASCII-only domains pass through it unchanged.
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetError(field, problem) from None
    labels = domain.split(".")
    valid = (
        len(local) <= 64
        and _LOCAL_PART.fullmatch(local) is not None
        and len(labels) >= 2
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        and _TLD.fullmatch(labels[-1]) is not None
    )
    if not valid:
        raise TargetError(field, problem)
    if "=?" in local:
        # '=' and '?' are each fine in a local part, but together they open an RFC 2047 encoded
        # word, which the email package decodes when the address is set as a header (into another
        # recipient, or a line break). engine/channels/email.py refuses to send to one, so such an
        # address could never be delivered to: say so now, not at the first alert.
        raise TargetError(field, "must not contain '=?' (it would open an RFC 2047 encoded word)")
    return f"{local}@{domain}"


def validate_phone(value: object, *, field: str = "phone") -> str:
    """An E.164 number; the spaces, dashes, dots and parentheses people type are removed."""
    number = _PHONE_PUNCTUATION.sub("", _string(value, field))
    if not _E164.fullmatch(number):
        raise TargetError(field, "must be an E.164 phone number like +14155550123")
    return number


def validate_topic(value: object, *, field: str = "topic") -> str:
    """An ntfy topic: 1-64 of A-Z, a-z, 0-9, '_' and '-'. Case is kept: ntfy topics are case-sensitive."""
    topic = _string(value, field)
    if not _TOPIC.fullmatch(topic):
        raise TargetError(field, "must be a push topic of 1-64 letters, digits, '_' or '-'")
    return topic


MAX_URL = 2048
MASKED = "\u2022\u2022\u2022"  # engine.masking.DOTS: what a masked target shows instead of its secret part
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def url_host(url: str) -> str | None:
    """The host of a stored URL target (an address without its brackets), None if it has none."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def validate_url(value: object, *, field: str = "url") -> str:
    """A URL a channel POSTs to (a WEBHOOK receiver, a Slack, Teams or Discord webhook): https, or
    http to a loopback host (a receiver on the same machine: dev and tests). Scheme and host are
    lowercased, an IDN host put in its ASCII form; the path and query are kept as given (they are
    often the credential). No user:password@ (it would show wherever the target is shown) and no
    fragment (never sent), no masked URL (what an answer shows). An IP address host on a private
    network is refused where the target is given (registry.check_address, which knows the
    setting); where a name resolves is checked at send time (engine.channels.egress)."""
    raw = _string(value, field)
    problem = "must be an https URL like https://hooks.example.com/monoduty"
    if not raw or len(raw) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in raw):
        raise TargetError(field, problem)
    if MASKED in raw:  # a URL as an answer shows it (engine.masking.mask_target), not the URL
        raise TargetError(field, "is a masked URL (•••): give the whole URL")
    try:
        parts = urlsplit(raw)
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
        port = parts.port
    except (ValueError, UnicodeError):
        raise TargetError(field, problem) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise TargetError(field, problem)
    if scheme == "http" and host not in _LOOPBACK_NAMES and not host.startswith("127."):
        raise TargetError(field, "must use https (plain http only to this machine: localhost, 127.0.0.1)")
    if parts.username is not None or parts.password is not None:
        raise TargetError(field, "must not carry user:password@ (use a token in the path or query)")
    if parts.fragment:
        raise TargetError(field, "must not have a #fragment (it is never sent)")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
