"""The Opsgenie Alert API (create, close, acknowledge), as its clients send it: checked the way
Opsgenie checks it, and turned into the body Monoduty queues.

    genie_key(authorization) -> token | None      ``Authorization: GenieKey <webhook token>``
    create_body(body) -> bytes                    POST /v2/alerts
    action_body(action, alias, body) -> bytes     POST /v2/alerts/{alias}/close | /acknowledge

Refusals: a body that is not JSON is a 400 (Opsgenie's "syntax error only"); a field with a
wrong value is a 422 naming it in ``errors`` (Opsgenie's "semantic errors"): ``message`` missing,
blank or not a string, ``priority`` other than P1-P5, ``alias`` over 512 characters, ``tags`` not
a list of strings, ``details`` not an object of strings. A ``message`` over Opsgenie's 130
characters is not refused (a refused alert pages nobody): the page's title is its first 130
characters and the whole text opens the page's message.
``responders``, ``visibleTo``, ``actions`` and ``user`` are accepted and kept as details; nobody
is routed by them (the webhook's channels are).

Alerts are found by alias only: Monoduty's 202 carries no alert id (Opsgenie clients learn one from
GET /v2/alerts/requests/{requestId}, which Monoduty does not serve), so ``identifierType`` id or
tiny could name nothing here and is a 422. A create without alias gets a new one: each such alert
is its own incident, as in Opsgenie, where the alias then defaults to the alert's id.

The queued body has the shape of Opsgenie's own outgoing webhook (``{"action": "Create", "alert":
{...}, "integrationName"}``), which engine.alerts.payload_formats.from_opsgenie reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from engine.alerts.inbound import TOKEN_SHAPE
from engine.errors import MonodutyError

MAX_MESSAGE = 130
MAX_ALIAS = 512
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
ACTIONS = {"close": "Close", "acknowledge": "Acknowledge"}
INTEGRATION_NAME = "Monoduty Opsgenie API"
_STRING_FIELDS = ("alias", "description", "entity", "source", "user", "note")


class InvalidJson(MonodutyError):
    status = 400
    code = "INVALID_JSON"


class Unprocessable(MonodutyError):
    """422 with Opsgenie's ``errors``: field name → what is wrong with it."""

    status = 422
    code = "UNPROCESSABLE"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("Request body is not processable. Please check the errors.")
        self.errors = errors


def genie_key(authorization: str | None) -> str | None:
    """The webhook token of ``GenieKey <token>`` (the scheme in any case), or None."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "geniekey" and TOKEN_SHAPE.fullmatch(key) else None


def _object(body: bytes, *, empty_ok: bool) -> dict[str, Any]:
    if empty_ok and not body.strip():
        return {}
    try:
        value = json.loads(body.decode("utf-8-sig"), parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        raise InvalidJson("Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidJson("Request body must be a JSON object")
    return value


def _field_errors(alert: Mapping[str, Any]) -> dict[str, str]:
    # A field given must have its type; null reads as not given.
    errors: dict[str, str] = {}
    for name in _STRING_FIELDS:
        if alert.get(name) is not None and not isinstance(alert[name], str):
            errors[name] = f"{name.capitalize()} must be a string."
    alias = alert.get("alias")
    if isinstance(alias, str) and len(alias) > MAX_ALIAS:
        errors["alias"] = f"Alias can not be longer than {MAX_ALIAS} characters."
    tags = alert.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        errors["tags"] = "Tags must be a list of strings."
    details = alert.get("details")
    if details is not None and not (
        isinstance(details, dict) and all(isinstance(v, str | int | float | bool) for v in details.values())
    ):
        errors["details"] = "Details must be an object of string values."
    return errors


def create_body(body: bytes) -> bytes:
    """The queued body of a create request, or InvalidJson / Unprocessable."""
    alert = _object(body, empty_ok=False)
    errors = _field_errors(alert)
    message = alert.get("message")
    if not isinstance(message, str) or not message.strip():
        errors["message"] = "Message can not be empty."
    priority = alert.get("priority")
    if priority is not None and priority not in PRIORITIES:
        errors["priority"] = f"Priority should be one of {', '.join(PRIORITIES)}."
    if errors:
        raise Unprocessable(errors)
    alert = {**alert, "priority": priority or "P3"}  # Opsgenie's default
    if not (isinstance(alert.get("alias"), str) and alert["alias"].strip()):
        alert["alias"] = str(uuid.uuid4())
    return _queued("Create", alert)


def action_body(action: str, alias: str, identifier_type: str | None, body: bytes) -> bytes:
    """The queued body of a close or acknowledge of ``alias``, or InvalidJson / Unprocessable."""
    if identifier_type != "alias":
        given = identifier_type or "id (the default)"
        raise Unprocessable({"identifierType": f"Monoduty finds alerts by alias only, not by {given}."})
    request = _object(body, empty_ok=True)
    errors = _field_errors({**request, "alias": alias})
    if not alias.strip():
        errors["identifier"] = "Identifier can not be empty."
    if errors:
        raise Unprocessable(errors)
    return _queued(ACTIONS[action], {**request, "alias": alias})


def _queued(action: str, alert: Mapping[str, Any]) -> bytes:
    queued = {"action": action, "alert": dict(alert), "integrationName": INTEGRATION_NAME}
    return json.dumps(queued, ensure_ascii=False).encode()
