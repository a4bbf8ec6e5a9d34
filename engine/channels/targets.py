"""Where a webhook's alerts go: checking and normalising its ``target_channels``.

They are ``{"email": ..., "sms": ..., "push": ..., "call": ...}`` (one key per channel in the
registry), each value one string or a list of strings. Every error is a ``TargetError`` (a
``ValidationError``) naming the exact field (``target_channels.sms[1]``; the API shows it under the
wire's name), so the API answers a 400 a user can act on.

Policy: only the registry's keys are accepted (a typo such as ``"mail"`` is an error, not a silent
no-op). Targets for a channel that is not among the webhook's notification types are kept, checked
like the others, so enabling the type later needs no second copy of them. Normalising is
idempotent: stored targets pass through it unchanged.
"""

from __future__ import annotations

from engine.channels.formats import TargetError
from engine.channels.registry import CHANNELS, TARGET_KEYS

MAX_TARGETS = 10  # per channel: an alert fans out to at most this many of each
FIELD = "target_channels"  # how errors name them

_BY_KEY = {spec.key: spec for spec in CHANNELS}


def _key_list(last: str) -> str:
    keys = list(_BY_KEY)
    return f"{', '.join(keys[:-1])} {last} {keys[-1]}" if len(keys) > 1 else keys[0]


def normalise_targets(raw: object, types: list[str]) -> dict[str, list[str]]:
    """Check ``target_channels`` and return them as ``{key: [target, ...]}`` with duplicates removed.

    ``types`` are the webhook's notification types: their keys come first in the result, in that
    order; keys given for other channels follow, checked all the same (see the module docstring).
    A channel with no targets is absent: the caller decides on a fallback.
    """
    unknown_types = [t for t in types if t not in TARGET_KEYS]
    if unknown_types:
        raise ValueError(f"unknown notification type {unknown_types[0]!r}")  # a caller bug, not input
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TargetError(FIELD, f"must be an object with keys {_key_list('and')}")
    for key in raw:
        if key not in _BY_KEY:
            raise TargetError(f"{FIELD}.{key}", f"is not a channel: use {_key_list('or')}")
    enabled = [TARGET_KEYS[t] for t in types]
    order = [*dict.fromkeys(enabled), *(k for k in _BY_KEY if k not in enabled)]
    return {key: _channel_targets(key, raw[key]) for key in order if key in raw}


def _channel_targets(key: str, value: object) -> list[str]:
    field = f"{FIELD}.{key}"
    validate = _BY_KEY[key].validate
    if isinstance(value, str):
        return [validate(value, field=field)]
    if not isinstance(value, list) or not value:
        raise TargetError(field, "must be a string or a non-empty list of strings")
    # Counted as sent, before duplicates are dropped: the limit is on the list a client writes
    # (api/openapi.yaml says maxItems), not on what is left of it.
    if len(value) > MAX_TARGETS:
        raise TargetError(field, f"has {len(value)} targets; at most {MAX_TARGETS} are allowed")
    return list(dict.fromkeys(validate(item, field=f"{field}[{i}]") for i, item in enumerate(value)))
