"""Turning whatever a sender POSTed into one normalised alert.

    parse_alert(body, content_type) -> ParsedAlert     never raises on a body: nothing is rejected
     ├─ JSON        PagerDuty v2 · Opsgenie · Grafana · Alertmanager · generic {title, message, ...} · other
     ├─ form        application/x-www-form-urlencoded with the generic field names
     └─ text        plain text, and JSON that does not parse (kept as text rather than lost)

The formats live in ``engine.alerts.payload_formats``; this module decodes, dispatches and then cleans
every alert the same way: a one-line title, capped texts, a severity from SEVERITIES, and details
that Postgres will store (no NUL, no lone surrogate, bounded size).

Severity table (case-insensitive; spaces, "-" and "_" ignored, so "SEV-1" is "sev1"):

    critical  critical crit fatal emergency emerg alert page disaster urgent max p1 sev1 p0 sev0
    error     error err high major failure failed p2 sev2
    warning   warning warn medium average minor p3 sev3
    info      info information informational notice low ok resolved success debug p4 p5 sev4 sev5

A severity that is not in the table, or no severity at all, is ``error``: for an alerting service
a missed page is worse than a loud one. A resolved alert is ``info`` unless the payload states a
severity for the event itself (a generic ``severity`` field, PagerDuty's ``payload.severity``);
Alertmanager and Grafana ``labels.severity`` describe the problem, not its recovery, and are ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

from engine.alerts.payload_formats import (
    Draft,
    compact_json,
    from_generic,
    from_text,
    is_generic,
    member_drafts,
    recognise_json,
)
from engine.channels.base import SEVERITIES

MAX_TITLE = 200
MAX_MESSAGE = 10_000
MAX_SOURCE = 200
MAX_FINGERPRINT = 255
RESERVED_KEY_PREFIX = "monoduty:"  # engine.incidents.noise.SYSTEM_PREFIX: never a sender's key
MAX_JSON_DEPTH = 100  # deeper JSON is read as text (see _load_json)
MAX_DETAILS_CHARS = 8_000  # serialised size of ``details``; more stays in the message, or is dropped
DEFAULT_SEVERITY = "error"
RESOLVED_SEVERITY = "info"
DEFAULT_TITLE = "Alert"

_SEVERITY_WORDS = {
    "critical": "critical crit fatal emergency emerg alert page disaster urgent max p0 p1 sev0 sev1",
    "error": "error err high major failure failed p2 sev2",
    "warning": "warning warn medium average minor p3 sev3",
    "info": "info information informational notice low ok resolved success debug p4 p5 sev4 sev5",
}
SEVERITY_ALIASES: dict[str, str] = {
    word: severity for severity, words in _SEVERITY_WORDS.items() for word in words.split()
}

# C0/C1 controls and Unicode bidi overrides (these can make a subject read backwards).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
_INVALID = object()  # what _load_json answers for a body that is not JSON


@dataclass(frozen=True)
class ParsedAlert:
    """One inbound alert, normalised. ``format`` is what was recognised; ``source`` is the sending
    system or host when the payload names one; ``fingerprint`` its group or dedup key."""

    title: str  # one line, 1..MAX_TITLE characters
    message: str  # may be empty, at most MAX_MESSAGE characters
    severity: str  # one of SEVERITIES
    source: str | None
    format: str  # alertmanager, grafana, pagerduty, opsgenie, generic, form, json or text
    fingerprint: str | None
    resolved: bool
    details: dict[str, Any]  # JSON-safe, at most about MAX_DETAILS_CHARS when serialised
    # The sender's word on its problem: "trigger", "acknowledge" or "resolve" (engine.incidents).
    action: str = "trigger"

    @property
    def dedup_key(self) -> str | None:
        """The key the sender gave its problem (PagerDuty dedup_key, Alertmanager groupKey, ...)."""
        return self.fingerprint


def normalise_severity(value: object) -> str | None:
    """The SEVERITIES entry a sender's word stands for, or None when the word is unknown."""
    if not isinstance(value, str):
        return None
    word = re.sub(r"[\s_-]", "", value.lower())
    return word if word in SEVERITIES else SEVERITY_ALIASES.get(word)


def parse_alert(body: bytes, content_type: str | None) -> ParsedAlert:
    """Read one inbound body as an alert. Never raises: whatever was sent is kept somehow."""
    text = body.decode("utf-8-sig", errors="replace")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        fields = _multipart_fields(body, content_type or "")
        if is_generic(fields):
            return _finish(from_generic(fields, format="form"))
    return _finish(_draft(text, media_type))


def group_members(body: bytes) -> list[ParsedAlert]:
    """Each alert of an Alertmanager or Grafana group body as an alert of its own (key: its
    fingerprint; action: its own status), for ``dedupBy: "alert"``; [] for any other body."""
    stripped = body.decode("utf-8-sig", errors="replace").strip()
    value = _load_json(stripped) if stripped[:1] == "{" else _INVALID
    return [_finish(draft) for draft in member_drafts(value)] if value is not _INVALID else []


def _draft(text: str, media_type: str) -> Draft:
    stripped = text.strip()
    # JSON is tried whenever the body looks like it: `curl -d '{...}'` labels JSON as a form.
    if "json" in media_type or stripped[:1] in ("{", "["):
        value = _load_json(stripped)
        if value is not _INVALID:
            return recognise_json(value)
        return from_text(text)
    if media_type in ("application/x-www-form-urlencoded", ""):
        fields = dict(parse_qsl(stripped, keep_blank_values=True))
        # `curl -d "Disk full on db1"` is a form to curl but plain text to its author.
        if is_generic(fields):
            return from_generic(fields, format="form")
    return from_text(text)


def _multipart_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The text fields of a multipart form (``curl -F title=...``); files are ignored."""
    head = f"Content-Type: {_one_line(content_type)}\r\n\r\n".encode()
    fields: dict[str, str] = {}
    try:
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and part.get_filename() is None:
                payload = part.get_payload(decode=True)  # bytes for a leaf part, None when empty
                fields[name] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    except (ValueError, LookupError, TypeError):
        return {}
    return fields


def _load_json(text: str) -> object:
    try:
        # NaN and Infinity are not JSON and jsonb refuses them: read them as null.
        value = json.loads(text, parse_constant=lambda _: None)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the parser's depth
        return _INVALID
    # The parser goes deeper than the recursive walkers after it (json.dumps, the format
    # recognisers) can follow: such a body is kept as text rather than crash the job and be lost.
    return value if _depth_within(value, MAX_JSON_DEPTH) else _INVALID


def _depth_within(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _finish(draft: Draft) -> ParsedAlert:
    title = _one_line(_as_text(draft.title))
    message = _as_text(draft.message)
    if not title:
        # No title given: the first line of the message is one, the rest is the message.
        first, _, rest = message.strip().partition("\n")
        title, message = _one_line(first), rest
    return ParsedAlert(
        title=_cap(title or DEFAULT_TITLE, MAX_TITLE),
        message=_cap(_clean_block(message), MAX_MESSAGE),
        severity=_severity(draft),
        source=_cap(_one_line(_as_text(draft.source)), MAX_SOURCE) or None,
        format=draft.format,
        fingerprint=_fingerprint(draft.fingerprint),
        resolved=draft.resolved,
        details=_details(draft.details),
        action=draft.action or ("resolve" if draft.resolved else "trigger"),
    )


def _severity(draft: Draft) -> str:
    mapped = [s for s in (normalise_severity(raw) for raw in draft.severities) if s is not None]
    if mapped:
        return min(mapped, key=SEVERITIES.index)  # the loudest one stated
    if draft.severities:
        return DEFAULT_SEVERITY  # stated, but in words we do not know
    return RESOLVED_SEVERITY if draft.resolved else DEFAULT_SEVERITY


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _storable(value)
    return _storable(compact_json(value))


def _storable(text: str) -> str:
    """Text Postgres accepts: no NUL, no lone surrogate (both can arrive as JSON escapes)."""
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")


def _one_line(text: str) -> str:
    return _SPACES.sub(" ", _CONTROL.sub("", text)).strip()


def _clean_block(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text).strip("\n").rstrip()


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def clean_key(value: object) -> str | None:
    """A sender's dedup key as Monoduty stores it (inbound answers use it to echo the key)."""
    return _fingerprint(value)


def _fingerprint(value: object) -> str | None:
    key = _one_line(_as_text(value))
    if key.lower().startswith(RESERVED_KEY_PREFIX):
        key = "sender:" + key  # keys under the prefix are Monoduty's own (its overflow incident...)
    if len(key) > MAX_FINGERPRINT:
        # A cut key could make two different groups one; a digest keeps them apart.
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key or None


def _details(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Keep top-level fields in order while they fit the budget; each one is clipped first."""
    details: dict[str, Any] = {}
    used = 2
    for key, value in raw.items():
        if value in (None, "", [], {}) or len(details) >= 50:
            continue
        clipped = _clip(value, depth=0)
        size = len(compact_json({_storable(str(key))[:100]: clipped}))
        if used + size > MAX_DETAILS_CHARS:
            continue
        details[_storable(str(key))[:100]] = clipped
        used += size
    return details


def _clip(value: object, *, depth: int) -> Any:
    """A JSON-safe copy, bounded in depth, width and string length."""
    if isinstance(value, str):
        return _cap(_storable(value), 1000)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # "1e999" parses to inf, which jsonb refuses
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= 4:
        return _cap(_as_text(value), 200)
    if isinstance(value, Mapping):
        items = list(value.items())[:50]
        return {_storable(str(k))[:100]: _clip(v, depth=depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_clip(v, depth=depth + 1) for v in value[:50]]
    return _cap(_storable(str(value)), 1000)
