"""The dedup key of an inbound alert.

The sender's own key wins (PagerDuty ``dedup_key``, Alertmanager and Grafana ``groupKey``, Grafana's
rule id, generic ``dedup_key``/``dedupKey``/``fingerprint``); without one, a content key made of the
title and the source joins an open incident with the same text. ``dedupBy: "none"`` gives no key:
every alert is its own incident. (``dedupBy: "alert"`` splits a group notification into its alerts
first, each keyed by its fingerprint: ``engine.alerts.payloads.group_members``.)
"""

from __future__ import annotations

import hashlib
import json
import re

from engine.alerts.payloads import ParsedAlert, clean_key
from engine.incidents import DedupBy
from engine.incidents.noise import SYSTEM_FORMAT

# "[FIRING:3] X" and "[RESOLVED] X" are one problem: the content key leaves the count out.
_STATE_PREFIX = re.compile(r"^\[(FIRING(:\d+)?|RESOLVED)\]\s*", re.I)


def plain_title(title: str) -> str:
    """A title without Alertmanager's state prefix, for what is said of the whole incident."""
    return _STATE_PREFIX.sub("", title).strip() or title


def incident_key(parsed: ParsedAlert, dedup_by: str) -> str | None:
    """The key under which ``parsed`` joins an open incident, or None (it opens its own)."""
    if parsed.format == SYSTEM_FORMAT:
        return parsed.fingerprint  # Monoduty's own: one per webhook while open, whatever dedupBy says
    if dedup_by == DedupBy.NONE:
        return None
    if parsed.dedup_key is not None:
        return parsed.dedup_key
    title = plain_title(parsed.title).lower()
    text = f"{title}\x00{(parsed.source or '').lower()}"
    return "content:" + hashlib.sha256(text.encode()).hexdigest()[:32]


# A sender's own key, found without parsing the body: the inbound answer echoes it (PagerDuty
# clients read `dedup_key` from the 202 to resolve later). The first occurrence wins, as a top-level
# key comes before nested ones in what every PagerDuty client sends.
_SENDER_KEY = re.compile(rb'"(?:dedup_key|dedupKey)"\s*:\s*("(?:[^"\\]|\\.){0,1000}")')


def sender_key(body: bytes) -> str | None:
    """The ``dedup_key`` (or ``dedupKey``) a JSON body gives, cleaned as the stored key is; else None."""
    if body.lstrip()[:1] != b"{":
        return None
    found = _SENDER_KEY.search(body)
    if found is None:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return clean_key(value)
