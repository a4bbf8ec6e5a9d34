"""Masking what may be secret before a screen, a report or a log line shows it.

``mask_target`` shortens a delivery target (an address, a number, a topic) to something one can
recognise but not reuse.

Job arguments carry inbound bodies verbatim, and a body may hold anything: a bearer token, an
API key, a password in a URL, a phone number. ``mask_value`` keeps ids (UUIDs) and structure
readable and hides the rest: values of secret-named fields, long token-like strings, the middle
of phone numbers; long text is cut to a preview that states its full size.
"""

from __future__ import annotations

import re
from typing import Any

PREVIEW_CHARS = 120
URL_TAIL = 4  # characters of a URL target's path that mask_target keeps
HIDDEN = "***"
DOTS = "\u2022\u2022\u2022"

_SECRET_NAME = re.compile(r"pass(word)?|secret|token|api[_-]?key|auth|credential|signature|cookie", re.I)
# key=value / "key": "value" pairs whose key names a secret, inside free text. The key starts at a
# word's start (the lookbehind): the leftmost match is the same, but a try is no longer made at every
# letter of every word, which made this one pattern cost more than all the others (~2 ms a line).
_SECRET_PAIR = re.compile(
    r"(?P<key>[\"']?(?<![\w-])[\w-]*(?:pass(?:word)?|secret|token|api[_-]?key|authorization|auth|cookie|session)"
    r"[\w-]*[\"']?"
    r"\s*[:=]\s*[\"']?)(?P<value>(?:bearer\s+|basic\s+)?[^\s\"',&}]+)",
    re.I,
)
# One of the words _SECRET_PAIR's key must hold: a line without any (most lines) skips that pattern.
_SECRET_WORD = re.compile(r"pass|secret|token|api[_-]?key|auth|cookie|session", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.I)
# An API key by its fixed prefix (engine.auth.users.KEY_PREFIX), whatever characters its random part drew.
_API_KEY = re.compile(r"md_live_[\w-]+")
# The first segment of a path that starts a word (a request line, a quoted path), shaped like an
# inbound webhook token: `POST /<token> HTTP/1.1`, `/hooks/<token>`. File paths in tracebacks
# start with short segments (/usr, /work) and are left alone.
_PATH_TOKEN = re.compile(r"(?<![^\s\"'(<\[=])(?P<path>/(?:hooks/)?)(?P<token>[\w-]{16,})")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# 20+ characters of letters, digits, '_' or '-', with both letters and digits: looks like a key.
_TOKEN_LIKE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{20,}(?![\w-])")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# E.164-looking numbers, or a bare run of 10-15 digits; dates and times do not match.
_PHONE = re.compile(r"(?<![\w+])\+\d[\d -]{5,17}\d(?!\w)|(?<![\w.-])\d{10,15}(?![\w.])")


def _hide_token(text: str) -> str:
    return text if _UUID.fullmatch(text) else text[:4] + HIDDEN


def _mask_token(match: re.Match[str]) -> str:
    return _hide_token(match.group(0))


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return match.group(0) if len(digits) < 7 else HIDDEN + digits[-2:]


def mask_text(text: str) -> str:
    """Hide secret-looking parts of free text; ids and ordinary words stay readable."""
    text = _URL_PASSWORD.sub(lambda m: m.group("scheme") + HIDDEN + "@", text)
    text = _EMAIL.sub(lambda m: mask_target(m.group(0)), text)  # an SMTP server quoting the address
    if _SECRET_WORD.search(text):
        text = _SECRET_PAIR.sub(lambda m: m.group("key") + HIDDEN, text)
    text = _API_KEY.sub(_mask_token, text)
    text = _PATH_TOKEN.sub(lambda m: m.group("path") + _hide_token(m.group("token")), text)
    text = _TOKEN_LIKE.sub(_mask_token, text)
    return _PHONE.sub(_mask_phone, text)


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """Masked text, cut to ``limit`` characters with its full size said when it is longer."""
    masked = mask_text(text[: limit * 2])[:limit]
    return masked if len(text) <= limit else f"{masked}... ({len(text.encode())} bytes)"


def mask_value(value: Any, *, key: str = "") -> Any:
    """``value`` with secrets hidden, recursively through lists and dicts."""
    if key and _SECRET_NAME.search(key) and value not in (None, "", False):
        return HIDDEN
    if isinstance(value, dict):
        return {k: mask_value(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    if isinstance(value, str):
        return preview(value)
    return value


def mask_target(target: str) -> str:
    """``+14155550123`` → ``+1415•••0123``, ``oncall@example.com`` → ``o•••@example.com``,
    ``prod-alerts`` → ``pr•••ts`` (a push topic is as good as a password to a subscriber),
    ``https://hooks.slack.com/services/T0/B0/XyZ1`` → ``https://hooks.slack.com/•••XyZ1`` (a chat
    webhook's path is its credential: its host and last 4 characters are kept to recognise it),
    ``pover://user@token`` → ``pover://•••`` (an Apprise URL: all of it)."""
    scheme, sep, rest = target.partition("://")
    if sep:
        netloc, _, path = rest.partition("/")
        host = netloc.rpartition("@")[2] if scheme in ("http", "https") else ""
        # The last characters of a long path tell two webhook URLs of one host apart; a quarter
        # at most of what is hidden, never enough to reuse.
        tail = path[-URL_TAIL:] if len(path) >= 4 * URL_TAIL else ""
        return f"{scheme}://{host}/{DOTS}{tail}" if host else f"{scheme}://{DOTS}"
    if "@" in target:
        local, _, domain = target.rpartition("@")
        return f"{local[:1]}{DOTS}@{domain}"
    if target.startswith("+") and len(target) > 9:
        return f"{target[:5]}{DOTS}{target[-4:]}"
    if len(target) > 6:
        return f"{target[:2]}{DOTS}{target[-2:]}"
    return DOTS
