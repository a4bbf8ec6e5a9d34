"""Where a webhook's alerts go: checking and normalising ``targetChannels``.

The API takes ``{"email": ..., "sms": ..., "push": ..., "call": ...}``, each value one string or a
list of strings. Every error is a ``TargetError`` naming the exact field (``targetChannels.sms[1]``)
so the API can answer a 400 a user can act on.

Policy: only the four keys are accepted (a typo such as ``"mail"`` is an error, not a silent
no-op). Targets for a channel that is not among the webhook's notification types are kept, checked
like the others, so enabling the type later needs no second copy of them. Normalising is
idempotent: stored targets pass through it unchanged.
"""

from __future__ import annotations

import re

from engine.channels.base import TARGET_KEYS as TYPE_KEYS

MAX_TARGETS = 10  # per channel: an alert fans out to at most this many of each

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ASCII digits: Python's \d also matches other scripts' digits
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")  # ntfy's own topic rule
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")


class TargetError(ValueError):
    """A target that cannot be used; ``field`` names it as the client sent it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.message = f"{field} {problem}"
        super().__init__(self.message)


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


_VALIDATORS = {"email": validate_email, "sms": validate_phone, "call": validate_phone, "push": validate_topic}


def normalise_targets(raw: object, types: list[str]) -> dict[str, list[str]]:
    """Check ``targetChannels`` and return it as ``{key: [target, ...]}`` with duplicates removed.

    ``types`` are the webhook's notification types: their keys come first in the result, in that
    order; keys given for other channels follow, checked all the same (see the module docstring).
    A channel with no targets is absent: the caller decides on a fallback.
    """
    unknown_types = [t for t in types if t not in TYPE_KEYS]
    if unknown_types:
        raise ValueError(f"unknown notification type {unknown_types[0]!r}")  # a caller bug, not input
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TargetError("targetChannels", "must be an object with keys email, sms, push and call")
    for key in raw:
        if key not in _VALIDATORS:
            raise TargetError(f"targetChannels.{key}", "is not a channel: use email, sms, push or call")
    enabled = [TYPE_KEYS[t] for t in types]
    order = [*dict.fromkeys(enabled), *(k for k in _VALIDATORS if k not in enabled)]
    return {key: _channel_targets(key, raw[key]) for key in order if key in raw}


def _channel_targets(key: str, value: object) -> list[str]:
    field = f"targetChannels.{key}"
    validate = _VALIDATORS[key]
    if isinstance(value, str):
        return [validate(value, field=field)]
    if not isinstance(value, list) or not value:
        raise TargetError(field, "must be a string or a non-empty list of strings")
    # Counted as sent, before duplicates are dropped: the limit is on the list a client writes
    # (api/openapi.yaml says maxItems), not on what is left of it.
    if len(value) > MAX_TARGETS:
        raise TargetError(field, f"has {len(value)} targets; at most {MAX_TARGETS} are allowed")
    return list(dict.fromkeys(validate(item, field=f"{field}[{i}]") for i, item in enumerate(value)))
