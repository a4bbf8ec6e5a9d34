"""PagerDuty Events API v2, as its clients send it to ``/v2/enqueue``: checked the way PagerDuty
checks it, and turned into the body Monoduty queues.

    read_event(body, token_in_path) -> Event     or InvalidEvent (400, PagerDuty's ``errors`` list)

What PagerDuty refuses is refused here with its words: no JSON object, no ``routing_key`` (unless
the URL names the webhook), an ``event_action`` other than trigger/acknowledge/resolve, a trigger
without ``payload.summary``, ``payload.source`` or a ``payload.severity`` of critical, error,
warning or info, an acknowledge or resolve without ``dedup_key``, a ``dedup_key`` over 255
characters. A trigger without ``dedup_key`` gets one, as PagerDuty makes one: the 202 names it and
the incident is found under it, so a later resolve with that key works.

The queued body is the event with ``dedup_key`` first (engine.incidents.keys.sender_key reads the
first one) and the routing key's value blanked: it is the webhook's token, and queued bodies sit in
Redis. The key itself stays, because engine.alerts.payload_formats recognises PagerDuty by it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.alerts.payloads import MAX_FINGERPRINT, clean_key
from engine.errors import MonodutyError

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
PAYLOAD_TEXTS = ("summary", "source", "severity", "timestamp", "component", "group", "class")


class InvalidEvent(MonodutyError):
    """400 in PagerDuty's shape: ``{"status": "invalid event", "message", "errors": [...]}``."""

    status = 400
    code = "INVALID_EVENT"

    def __init__(self, errors: list[str]) -> None:
        super().__init__("Event object is invalid")
        self.errors = errors


@dataclass(frozen=True)
class Event:
    routing_key: str | None
    dedup_key: str  # as stored: the key the incident is found under
    body: bytes  # what is queued


def _blank(value: object) -> bool:
    return not isinstance(value, str) or not value.strip()


def _errors(event: Mapping[str, Any], *, token_in_path: bool) -> list[str]:
    errors: list[str] = []
    # A field given must have its type; null reads as not given.
    routing_key = event.get("routing_key")
    if routing_key is not None and not isinstance(routing_key, str):
        errors.append("'routing_key' must be a string")
    elif not token_in_path and _blank(routing_key):
        errors.append("'routing_key' is missing or blank")
    action = event.get("event_action")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup_key, str) and len(dedup_key) > MAX_FINGERPRINT:
        errors.append(f"Length of 'dedup_key' is incorrect (should be at most {MAX_FINGERPRINT} characters)")
    elif action in ("acknowledge", "resolve") and _blank(dedup_key):
        errors.append(f"'dedup_key' is missing or blank (required to {action})")
    payload = event.get("payload")
    if action == "trigger" or payload is not None:
        errors += _payload_errors(payload, trigger=action == "trigger")
    return errors


def _payload_errors(payload: object, *, trigger: bool) -> list[str]:
    if not isinstance(payload, Mapping):
        return ["'payload' is missing or not an object"]
    wrong = [
        name for name in PAYLOAD_TEXTS if payload.get(name) is not None and not isinstance(payload[name], str)
    ]
    if wrong or not trigger:  # only a trigger's payload must say what is wrong
        return [f"'payload.{name}' must be a string" for name in wrong]
    errors = [
        f"'payload.{name}' is missing or blank" for name in ("summary", "source") if _blank(payload.get(name))
    ]
    severity = payload.get("severity")
    if _blank(severity):
        errors.append("'payload.severity' is missing or blank")
    elif str(severity).lower() not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    return errors


def read_event(body: bytes, *, token_in_path: bool) -> Event:
    """The event in ``body``, or InvalidEvent naming every field PagerDuty would refuse."""
    try:
        event = json.loads(body.decode("utf-8-sig"), parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        raise InvalidEvent(["Event object is not valid JSON"]) from None
    if not isinstance(event, dict):
        raise InvalidEvent(["Event object must be a JSON object"])
    errors = _errors(event, token_in_path=token_in_path)
    if errors:
        raise InvalidEvent(errors)
    routing_key = event.get("routing_key") if isinstance(event.get("routing_key"), str) else None
    given = event.get("dedup_key")
    key = clean_key(given) if isinstance(given, str) else None
    if key is None:  # a trigger without a key (a blank one is none): PagerDuty makes one too
        key = uuid.uuid4().hex
    queued = {"dedup_key": key, **{k: v for k, v in event.items() if k != "dedup_key"}, "routing_key": ""}
    return Event(routing_key, key, json.dumps(queued, ensure_ascii=False).encode())
