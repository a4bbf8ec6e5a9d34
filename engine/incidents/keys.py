"""The dedup key of an inbound alert.

The sender's own key wins (PagerDuty ``dedup_key``, Alertmanager and Grafana ``groupKey``, Grafana's
rule id, generic ``dedup_key``/``dedupKey``/``fingerprint``); without one, a content key made of the
title and the source joins an open incident with the same text. ``dedupBy: "none"`` gives no key:
every alert is its own incident.
"""

from __future__ import annotations

import hashlib
import re

from engine.alerts.payloads import ParsedAlert
from engine.incidents import DedupBy

# "[FIRING:3] X" and "[RESOLVED] X" are one problem: the content key leaves the count out.
_STATE_PREFIX = re.compile(r"^\[(FIRING(:\d+)?|RESOLVED)\]\s*", re.I)


def incident_key(parsed: ParsedAlert, dedup_by: str) -> str | None:
    """The key under which ``parsed`` joins an open incident, or None (it opens its own)."""
    if dedup_by == DedupBy.NONE:
        return None
    if parsed.dedup_key is not None:
        return parsed.dedup_key
    title = _STATE_PREFIX.sub("", parsed.title).strip().lower()
    text = f"{title}\x00{(parsed.source or '').lower()}"
    return "content:" + hashlib.sha256(text.encode()).hexdigest()[:32]
