"""What a page says: the one place a stored alert becomes the ``Message`` every channel renders.

The text itself (title, message, source) is composed once, when the alert is parsed
(``engine.alerts.payload_formats``) and stored; what the channels need beyond it (the links a sender
gave, which SMS and push use on their own) comes from the stored details here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from engine.alerts.payloads import MAX_TITLE
from engine.channels.base import NOTICE_KINDS, RECEIVED_KIND, Message
from engine.incidents.keys import plain_title
from engine.incidents.noise import is_system
from engine.masking import mask_value


def page_message(row: Mapping[str, Any]) -> Message:
    """The Message of one delivery: a page of a stored alert (a row with the alerts columns,
    ``webhook_name`` and its incident's ``number``, NULL for a test send), or an incident's RESOLVED
    or ACKNOWLEDGED notice (``kind``, the incident's ``number``, ``incident_title``, ``resolved_by``
    and ``resolved_at`` or ``acknowledged_by`` and ``acknowledged_at``), or a page of an escalation policy (no
    alert: the incident's columns)."""
    if row.get("kind") in NOTICE_KINDS:  # lifecycle.DeliveryKind.RESOLVED, .ACKNOWLEDGED
        return _notice(row)
    if row.get("kind") == "digest":  # lifecycle.DeliveryKind.DIGEST
        return _digest(row)
    if row.get("kind") == RECEIVED_KIND:  # lifecycle.DeliveryKind.ALERT_RECEIVED
        return _received(row)
    if is_system(row.get("dedup_key")) or row.get("of_member"):
        # Monoduty's own incidents, and one alert of a group notification (dedupBy "alert").
        return _incident_page(row)
    if row.get("alert_id") is None and row.get("number") is not None:
        # A page of a person by an escalation policy (engine.oncall.paging): no one alert sent it.
        return _incident_page(row)
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
        number=row.get("number"),  # a test send belongs to no incident
    )


# How a message lists its incidents (SQL over incidents ``i``, delivery $1, severities $2): those
# whose page is a first one ahead of repeats (engine.oncall.paging), then loudest first, then by
# number. A bundle's deliver job and a call's keys say them in this order.
BUNDLE_ORDER = """
coalesce((SELECT bool_and(p.is_repeat) FROM pages p WHERE p.delivery_id = $1 AND p.incident_id = i.id), true),
array_position($2::text[], i.severity), i.number"""

# A stored row (asyncpg.Record) or a plain mapping with the columns named.
Row = Mapping[str, Any] | asyncpg.Record
BUNDLE_LISTED = 10  # incidents a bundle's message lists one by one


def bundle_message(lead: Mapping[str, Any], incidents: Sequence[Row]) -> Message:
    """The Message of a bundle: one page to one person for the ``incidents`` still triggered
    (``number``, ``title``, ``severity``, ``webhook_name``, and ``quiet`` if its page waited for
    the person's quiet hours; loudest first), with ``lead`` the
    START_ATTEMPT row of its first incident."""
    webhooks = ", ".join(dict.fromkeys(i["webhook_name"] for i in incidents))
    if len(incidents) == 1:
        (only,) = incidents
        return Message(
            alert_id=str(lead["any_alert_id"]),
            webhook_name=only["webhook_name"],
            title=plain_title(only["title"]),
            body=f"Incident #{only['number']} on {only['webhook_name']} needs you.",
            severity=only["severity"],
            source=None,
            received_at=lead["last_alert_at"],
            number=only["number"],
        )
    title = listing_title(f"{len(incidents)} incidents need you: ", incidents)
    intro = f"{len(incidents)} incidents on {webhooks} are paging you, in one message:"
    if any(i.get("quiet") for i in incidents):  # some waited for the end of the person's quiet hours
        intro = f"{len(incidents)} incidents on {webhooks} waited for the end of your quiet hours:"
    return Message(
        alert_id=str(lead["any_alert_id"]),
        webhook_name=webhooks,
        title=title,
        body="\n".join([intro, "", *listing_lines(incidents, BUNDLE_LISTED)]),
        severity=incidents[0]["severity"],
        source=None,
        received_at=lead["last_alert_at"],
    )


def listing_title(head: str, incidents: Sequence[Row]) -> str:
    """``head`` then "#12 DB down, #13 Disk full, …": as many incidents as fit in a title."""
    names = [f"#{i['number']} {plain_title(i['title'])}" for i in incidents]
    title = head + names[0]
    for name in names[1:]:
        if len(title) + len(name) + len(", , …") > MAX_TITLE:
            title += ", …"
            break
        title += f", {name}"
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def listing_lines(incidents: Sequence[Row], listed: int) -> list[str]:
    """One line per incident ("#12 [CRITICAL] DB down"), the first ``listed``, then how many more."""
    lines = [
        f"#{i['number']} [{i['severity'].upper()}] {plain_title(i['title'])}" for i in incidents[:listed]
    ]
    if len(incidents) > listed:
        lines.append(f"… and {len(incidents) - listed} more")
    return lines


def links_of(details: object) -> tuple[str, ...]:
    """The URLs of ``details["links"]`` (already made safe by the parser: http(s), no credentials)."""
    raw = details.get("links") if isinstance(details, Mapping) else None
    hrefs = (item.get("href") for item in raw if isinstance(item, Mapping)) if isinstance(raw, list) else ()
    return tuple(href for href in hrefs if isinstance(href, str) and href.startswith(("http://", "https://")))


def _notice(row: Mapping[str, Any]) -> Message:
    # Short and quiet: severity info is ntfy priority 2, and CALL never carries one.
    resolved = row["kind"] == "resolved"
    by = "the sender" if row["resolved_by" if resolved else "acknowledged_by"] == "sender" else "a user"
    what = "resolved" if resolved else "acknowledged"
    at = row["resolved_at" if resolved else "acknowledged_at"]
    return Message(
        alert_id=str(row["alert_id"] or row["any_alert_id"]),
        webhook_name=row["webhook_name"],
        title=f"{what.upper()} #{row['number']}: {plain_title(row['incident_title'])}",
        body=f"Incident #{row['number']} on {row['webhook_name']} was {what} by {by}.",
        severity="info",
        source=row["source"],
        received_at=at or row["last_alert_at"],
        number=row["number"],  # its title names it already (Message.subject)
        kind=row["kind"],
    )


def _received(row: Mapping[str, Any]) -> Message:
    # What the repeat itself said (not the incident's text), with its details masked as the
    # dashboard shows a payload: a label named like a secret, a token-like value, a phone number.
    details = row.get("details")
    return Message(
        alert_id=str(row["alert_id"]),
        webhook_name=row["webhook_name"],
        title=row["title"],
        body=row["message"],
        severity=row["severity"],
        source=row["source"],
        received_at=row["received_at"],
        links=links_of(details),
        number=row["number"],
        kind=RECEIVED_KIND,
        details=mask_value(details) if isinstance(details, Mapping) else None,
    )


def _incident_page(row: Mapping[str, Any]) -> Message:
    # Said from the incident, not the stored alert: Monoduty's own incident says what it is now
    # ("37 more incidents on Production Alerts"), and one alert of a group notification
    # (dedupBy "alert") what that alert says.
    return Message(
        alert_id=str(row["alert_id"] or row["any_alert_id"]),
        webhook_name=row["webhook_name"],
        title=row["incident_title"],
        body=row["incident_message"],
        severity=row["incident_severity"],
        source=row["incident_source"],
        received_at=row["last_alert_at"],
        number=row["number"],
    )


def _digest(row: Mapping[str, Any]) -> Message:
    return Message(
        alert_id=str(row["digest_alert_id"]),
        webhook_name=row["webhook_name"],
        title=row["digest_title"],
        body=row["digest_message"],
        severity=row["digest_severity"],
        source=None,
        received_at=row["digest_sent_at"],
    )
