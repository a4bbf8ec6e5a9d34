"""What the dashboard's templates show, made from what the engine answers: plain dicts of text.

Presentation only (labels, ages, masked targets, pretty-printed payloads); what a person may do
is decided by the engine when they do it. The ``can_*`` flags only choose which buttons to
offer for the status the engine gave.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from engine.channels.registry import TARGET_KEYS
from engine.incidents import EventKind, IncidentStatus
from engine.masking import mask_target, mask_text, mask_value

SEVERITY_LABELS = {"critical": "Critical", "error": "Error", "warning": "Warning", "info": "Info"}
STATUS_LABELS = {
    IncidentStatus.TRIGGERED.value: "Triggered",
    IncidentStatus.ACKNOWLEDGED.value: "Acknowledged",
    IncidentStatus.RESOLVED.value: "Resolved",
}
# A timeline's delivery that is a notice (engine.alerts.lifecycle.DeliveryKind); any other is a page.
NOTICE_LABELS = {
    "resolved": "Resolved notice",
    "acknowledged": "Acknowledged notice",
    "alert_received": "Alert received notice",  # a repeat told to WEBHOOK targets
}
EVENT_LABELS = {
    EventKind.OPENED.value: "Opened",
    EventKind.ALERT.value: "Alert",
    EventKind.SEVERITY_RAISED.value: "Severity raised",
    EventKind.GROUP_CHANGED.value: "Alert group changed",
    EventKind.ACKNOWLEDGED.value: "Acknowledged",
    EventKind.RESOLVED.value: "Resolved",
    EventKind.NOTE.value: "Note",
    EventKind.PAGE_HELD.value: "Page held",  # its text says why: a storm, maintenance, a silence
    EventKind.DIGEST_SENT.value: "Digest sent",
    EventKind.ESCALATED.value: "Escalated",
    EventKind.REASSIGNED.value: "Reassigned",
    EventKind.PAGE_SKIPPED.value: "Page skipped",
    EventKind.ESCALATION_EXHAUSTED.value: "Escalation ran out of steps",
    EventKind.ESCALATION_STOPPED.value: "Escalation stopped",
}
# A delivery's status (engine.alerts.lifecycle.DeliveryStatus), and a planned page's.
DELIVERY_LABELS = {
    "pending": "Sending",
    "delivered": "Delivered",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "sent": "Sent",
    "skipped": "Skipped",
}
CHANNEL_LABELS = {"EMAIL": "Email", "SMS": "SMS", "PUSH_NOTIF": "Push", "CALL": "Call"}
TARGET_LABELS = {TARGET_KEYS[kind]: label for kind, label in CHANNEL_LABELS.items()}
ACTOR_LABELS = {"sender": "the sender", "system": "Monoduty"}
# What the provider said became of a message it took (engine.alerts.receipts.ReceiptStatus).
RECEIPT_LABELS = {
    "accepted": "accepted by the provider",
    "sent": "on its way",
    "delivered": "reached the person",
    "undelivered": "did not reach the person",
}
CALL_RECEIPT_LABELS = {
    **RECEIPT_LABELS,
    "sent": "ringing",
    "delivered": "answered",
    "undelivered": "not answered",
}


def team_name(team: asyncpg.Record | Mapping[str, Any]) -> str:
    return "Personal" if team["personal"] else str(team["name"])


def receipt(page: Mapping[str, Any]) -> dict[str, str] | None:
    """The provider's last word on a page's message, in words (None until it took it)."""
    status = page["receipt_status"]
    if status is None:
        return None
    labels = CALL_RECEIPT_LABELS if page["channel"] == "CALL" else RECEIPT_LABELS
    return {
        "status": status,
        "label": labels.get(status, status),
        "at": clock_time(page["receipt_at"]),
        "error": mask_text(str(page["receipt_error"])) if page["receipt_error"] else "",
    }


def channel_label(kind: str) -> str:
    """How the dashboard names a channel type: the seed's four as above, any later one by its name."""
    return CHANNEL_LABELS.get(kind, kind.title())


def ago(then: datetime | None, now: datetime) -> str:
    """How long ago, short and plain: "just now", "4 min ago", "2 h 5 min ago", "3 d ago"."""
    if then is None:
        return ""
    seconds = max(int((now - then).total_seconds()), 0)
    if seconds < 60:
        return "just now"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    return f"{hours // 24} d ago"


def clock_time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def person(user: asyncpg.Record | Mapping[str, Any] | None) -> str:
    if not user:
        return "someone"
    return str(user.get("name") or user.get("email") or "someone")


def incident_row(row: asyncpg.Record | Mapping[str, Any], now: datetime) -> dict[str, Any]:
    status = row["status"]
    assigned = [person(a) for a in row["assigned_to"]]
    return {
        "id": str(row["id"]),
        "number": row["number"],
        "title": row["title"],
        "severity": row["severity"],
        "severity_label": SEVERITY_LABELS.get(row["severity"], row["severity"]),
        "status": status,
        "status_label": STATUS_LABELS.get(status, status),
        "age": ago(row["first_alert_at"], now),
        "opened_at": clock_time(row["first_alert_at"]),
        "assignee": ", ".join(assigned),
        "alert_count": row["alert_count"],
        "can_acknowledge": status == IncidentStatus.TRIGGERED,
        "can_resolve": status != IncidentStatus.RESOLVED,
    }


def _who(kind: str | None, user_id: uuid.UUID | None, people: Mapping[uuid.UUID, str]) -> str:
    if kind is None:
        return ""
    if kind == "user":
        return people.get(user_id, "someone") if user_id else "someone"
    return ACTOR_LABELS.get(kind, kind)


def incident_detail(
    found: Mapping[str, Any], people: Mapping[uuid.UUID, str], webhook_name: str, now: datetime
) -> dict[str, Any]:
    """One incident: its summary, its alerts (payloads masked) and one timeline, oldest first."""
    row = found["incident"]
    view = incident_row(row, now)
    view.update(
        message=row["message"],
        source=row["source"],
        webhook_id=str(row["webhook_id"]),
        webhook_name=webhook_name,
        acknowledged=_who(row["acknowledged_by"], row["acknowledged_by_user"], people),
        acknowledged_at=clock_time(row["acknowledged_at"]),
        resolved=_who(row["resolved_by"], row["resolved_by_user"], people),
        resolved_at=clock_time(row["resolved_at"]),
        can_escalate=row["status"] != IncidentStatus.RESOLVED and row["escalation_policy_id"] is not None,
        alerts=[_alert(a) for a in found["alerts"]],
        timeline=timeline(found, people),
    )
    return view


def _alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    payload = {
        "title": alert["title"],
        "message": alert["message"],
        "severity": alert["severity"],
        "source": alert["source"],
        "format": alert["format"],
        "details": alert["details"],
    }
    return {
        "id": str(alert["id"]),
        "title": alert["title"],
        "severity": alert["severity"],
        "severity_label": SEVERITY_LABELS.get(alert["severity"], alert["severity"]),
        "received_at": clock_time(alert["received_at"]),
        "resolved": alert["resolved"],
        "format": alert["format"],
        # Whatever the sender put in it is shown masked, like a log line (engine.masking).
        "payload": json.dumps(mask_value(payload), indent=2, ensure_ascii=False, default=str),
    }


def timeline(found: Mapping[str, Any], people: Mapping[uuid.UUID, str]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for event in found["events"]:
        who = _who(event["actor"], event["user_id"], people)
        entries.append(
            {
                "at": event["created_at"],
                "kind": event["kind"],
                "label": EVENT_LABELS.get(event["kind"], event["kind"]),
                "who": who,
                "text": event["text"],
                "delivery": None,
            }
        )
    for page in found["pages"]:
        label = NOTICE_LABELS.get(page["kind"], "Page")
        entries.append(
            {
                "at": page["created_at"],
                "kind": "page",
                "label": label,
                "who": people.get(page["user_id"], "") if page["user_id"] else "",
                "text": "",
                "delivery": {
                    "channel": channel_label(page["channel"]),
                    "target": mask_target(page["target"]),
                    "status": page["status"],
                    "status_label": DELIVERY_LABELS.get(page["status"], page["status"]),
                    "attempts": page["attempts"],
                    "error": mask_text(page["last_error"]) if page["last_error"] else "",
                    "receipt": receipt(page),
                },
            }
        )
    for page in found.get("unsent", []):
        entries.append(
            {
                "at": page["created_at"],
                "kind": "page",
                "label": "Page",
                "who": people.get(page["user_id"], ""),
                "text": page["reason"] or f"due {clock_time(page['due_at'])}",
                "delivery": {
                    "channel": channel_label(page["channel"]),
                    "target": mask_target(page["target"]),
                    "status": page["status"],
                    "status_label": DELIVERY_LABELS.get(page["status"], page["status"]),
                    "attempts": 0,
                    "error": "",
                    "receipt": None,
                },
            }
        )
    entries.sort(key=lambda entry: entry["at"])
    for entry in entries:
        entry["time"] = clock_time(entry["at"])
    return entries


def people_ids(found: Mapping[str, Any]) -> set[uuid.UUID]:
    """Every user an incident's page names (who acted, who was paged)."""
    row = found["incident"]
    ids = {row["acknowledged_by_user"], row["resolved_by_user"]}
    ids |= {event["user_id"] for event in found["events"]}
    ids |= {page["user_id"] for page in found["pages"]}
    ids |= {page["user_id"] for page in found.get("unsent", [])}
    return {i for i in ids if i is not None}


def webhook_row(record: asyncpg.Record | Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": str(record["id"]),
        "name": record["name"],
        "description": record["description"],
        "status": record["status"],
        "status_label": "Active" if record["status"] == "ACTIVE" else "Paused",
        "channels": [channel_label(t) for t in record["notification_types"]],
        "total_calls": record["total_calls"],
        "successful_calls": record["successful_calls"],
        "failed_calls": record["failed_calls"],
        "pending_calls": record["pending_calls"],
        "incidents_open": record["incidents_open"],
        "last_call": ago(record["last_call_at"], now) if record["last_call_at"] else "never",
        "targets": {
            TARGET_LABELS.get(key, key.title()): [mask_target(t) for t in targets]
            for key, targets in (record["targets"] or {}).items()
        },
    }


def test_send(test: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A webhook's last test send (engine.webhooks.last_test): when, and each channel's outcome."""
    return {
        "sent": ago(test["sent_at"], now),
        "sent_at": clock_time(test["sent_at"]),
        "status": test["status"],
        "deliveries": [
            {
                "channel": CHANNEL_LABELS.get(d["channel"], d["channel"]),
                "target": mask_target(d["target"]),
                "status": d["status"],
                "status_label": DELIVERY_LABELS.get(d["status"], d["status"]),
                "error": mask_text(d["last_error"]) if d.get("last_error") else "",
            }
            for d in test["deliveries"]
        ],
    }


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def client_name(user_agent: str) -> str:
    """A session's User-Agent as a person knows it: "Chrome on Linux"; a program's first word
    ("curl/8.5.0"); "Unknown" without one. A guess, for recognising one's own sessions."""
    if not user_agent:
        return "Unknown"
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser is None:
        return user_agent.split()[0][:60]
    return f"{browser} on {system}" if system else browser
