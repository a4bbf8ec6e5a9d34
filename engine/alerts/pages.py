"""What a page says: the one place a stored alert becomes the ``Message`` every channel renders.

The text itself (title, message, source) is composed once, when the alert is parsed
(``engine.alerts.payload_formats``) and stored; what the channels need beyond it (the links a sender
gave, which SMS and push use on their own) comes from the stored details here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.channels.base import Message


def page_message(row: Mapping[str, Any]) -> Message:
    """The Message of one stored alert (a row with the alerts columns and ``webhook_name``)."""
    return Message(
        alert_id=str(row["alert_id"]),
        webhook_name=row["webhook_name"],
        title=row["title"],
        body=row["message"],
        severity=row["severity"],
        source=row["source"],
        received_at=row["received_at"],
        is_test=row["is_test"],
        links=links_of(row.get("details")),  # absent from a query that does not select it: no links
    )


def links_of(details: object) -> tuple[str, ...]:
    """The URLs of ``details["links"]`` (already made safe by the parser: http(s), no credentials)."""
    raw = details.get("links") if isinstance(details, Mapping) else None
    hrefs = (item.get("href") for item in raw if isinstance(item, Mapping)) if isinstance(raw, list) else ()
    return tuple(href for href in hrefs if isinstance(href, str) and href.startswith(("http://", "https://")))
