"""Handlers for /api/incidents: parse, call engine.incidents, answer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, query, wire_names
from api.responses import ok
from api.state import CLOCK, POOL, REDIS, REQUEST_ID
from engine import queue
from engine.channels.registry import shown_target
from engine.incidents import actions, queries
from engine.oncall import escalation

routes = web.RouteTableDef()

REASSIGN_NAMES = {"userId": "user_id", "scheduleId": "schedule_id"}
# A timeline's delivery that is a notice, by its kind (engine.alerts.lifecycle.DeliveryKind); else "page".
NOTICE_KINDS = {
    "resolved": "resolved_notice",
    "acknowledged": "acknowledged_notice",
    "alert_received": "alert_received_notice",
}


@routes.get("/api/incidents")
async def list_incidents(request: web.Request) -> web.Response:
    """Newest first; ``?status=``, ``?webhook=``, ``?team=``, ``?number=``, ``?severity=``,
    ``?limit=``, ``?cursor=`` from ``next_cursor``: the filters the dashboard's list offers too."""
    user = current_user(request)
    params = query(request, "status", "webhook", "team", "number", "severity", "limit", "cursor")
    async with request.app[POOL].acquire() as conn:
        rows, cursor = await queries.list_page(conn, user.id, params)
    return ok(incidents=[to_api(row) for row in rows], next_cursor=cursor)


@routes.get("/api/incidents/{id}")
async def get_incident(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        found = await queries.get_incident(conn, user.id, incident_id)
    return ok(incident=detail(found))


@routes.post("/api/incidents/{id}/acknowledge")
async def acknowledge(request: web.Request) -> web.Response:
    incident_id = actions.parse_id(request.match_info["id"])
    await acknowledge_incident(request, incident_id)
    return await _answer(request, incident_id)


@routes.post("/api/incidents/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    incident_id = actions.parse_id(request.match_info["id"])
    await resolve_incident(request, incident_id)
    return await _answer(request, incident_id)


@routes.post("/api/incidents/{id}/escalate")
async def escalate(request: web.Request) -> web.Response:
    """Run the incident's next escalation step now (a responder of its policy's team)."""
    incident_id = actions.parse_id(request.match_info["id"])
    await escalate_incident(request, incident_id)
    return await _answer(request, incident_id)


@routes.post("/api/incidents/{id}/reassign")
async def reassign(request: web.Request) -> web.Response:
    """Give the incident to a user or to whoever is on call on a schedule; they are paged now."""
    incident_id = actions.parse_id(request.match_info["id"])
    wanted = escalation.ReassignInput(**fields(await json_body(request), REASSIGN_NAMES))
    with wire_names(REASSIGN_NAMES):
        await reassign_incident(request, incident_id, wanted)
    return await _answer(request, incident_id)


# What the caller does to an incident, the same for this API and the dashboard's buttons.


async def acknowledge_incident(request: web.Request, incident_id: uuid.UUID) -> None:
    """Acknowledge, then send the ACKNOWLEDGED notices it planned (once it has committed)."""
    async with request.app[POOL].acquire() as conn:
        notices = await actions.acknowledge(
            conn, current_user(request).id, incident_id, request.app[CLOCK].now()
        )
    for delivery_id in notices:
        await queue.enqueue_delivery(request.app[REDIS], str(delivery_id), request_id=request[REQUEST_ID])


async def resolve_incident(request: web.Request, incident_id: uuid.UUID) -> None:
    """Resolve, then send the RESOLVED notices it planned (once it has committed)."""
    async with request.app[POOL].acquire() as conn:
        notices = await actions.resolve(conn, current_user(request).id, incident_id, request.app[CLOCK].now())
    for delivery_id in notices:
        await queue.enqueue_delivery(request.app[REDIS], str(delivery_id), request_id=request[REQUEST_ID])


async def escalate_incident(request: web.Request, incident_id: uuid.UUID) -> None:
    """Run the next escalation step now; its pages are woken once it has committed."""
    async with request.app[POOL].acquire() as conn:
        wake_ups = await escalation.escalate_now(
            conn, current_user(request).id, incident_id, request.app[CLOCK].now()
        )
    await escalation.enqueue_wake_ups(request.app[REDIS], request.app[CLOCK], wake_ups)


async def reassign_incident(
    request: web.Request, incident_id: uuid.UUID, wanted: escalation.ReassignInput
) -> None:
    """Give it to a user or a schedule's on-call; their pages are woken once it has committed."""
    async with request.app[POOL].acquire() as conn:
        wake_ups = await escalation.reassign(
            conn, current_user(request).id, incident_id, wanted, request.app[CLOCK].now()
        )
    await escalation.enqueue_wake_ups(request.app[REDIS], request.app[CLOCK], wake_ups)


async def _answer(request: web.Request, incident_id: uuid.UUID) -> web.Response:
    """The incident as it is after a change."""
    user = current_user(request)
    async with request.app[POOL].acquire() as conn:
        found = await queries.get_incident(conn, user.id, incident_id)
    return ok(incident=detail(found))


@routes.post("/api/incidents/{id}/notes")
async def add_note(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    body = await json_body(request)
    async with request.app[POOL].acquire() as conn:
        await actions.add_note(conn, user.id, incident_id, body, request.app[CLOCK].now())
        found = await queries.get_incident(conn, user.id, incident_id)
    return ok(http_status=201, incident=detail(found))


def _by(kind: str | None, user_id: Any) -> dict[str, Any] | None:
    return None if kind is None else {"type": kind, "user_id": str(user_id) if user_id else None}


def to_api(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "number": row["number"],
        "team_id": str(row["team_id"]),
        "webhook_id": str(row["webhook_id"]),
        "title": row["title"],
        "message": row["message"],
        "severity": row["severity"],
        "status": row["status"],
        "dedup_key": row["dedup_key"],
        "source": row["source"],
        "alert_count": row["alert_count"],
        "first_alert_at": row["first_alert_at"],
        "last_alert_at": row["last_alert_at"],
        "acknowledged_at": row["acknowledged_at"],
        "acknowledged_by": _by(row["acknowledged_by"], row["acknowledged_by_user"]),
        "resolved_at": row["resolved_at"],
        "resolved_by": _by(row["resolved_by"], row["resolved_by_user"]),
        "created_at": row["created_at"],
        "escalation_policy_id": _id(row["escalation_policy_id"]),
        "escalation_step": row["escalation_step"] if row["escalation_step"] >= 0 else None,
        "escalation_loop": row["escalation_loop"],
        "next_escalation_at": row["next_escalation_at"],
        # What holds (or held) its page: a maintenance window, a silence (engine.maintenance).
        "maintenance_window_id": _id(row["maintenance_window_id"]),
        "silence_id": _id(row["silence_id"]),
        "assigned_to": [
            {"user_id": str(a["user_id"]), "email": a["email"], "name": a["name"]} for a in row["assigned_to"]
        ],
    }


def _id(value: Any) -> str | None:
    return str(value) if value is not None else None


def _receipt(page: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the provider said became of a page's message (None until it took it)."""
    if page["receipt_status"] is None:
        return None
    status = page["receipt_status"]
    return {
        "status": status,
        "provider_status": page["provider_status"],
        "error_code": page["receipt_error"],
        "at": page["receipt_at"],
        "reached_at": page["reached_at"],
        # Calls only: answered by a person (true), not answered (false), not known yet (null).
        "answered": {"delivered": True, "undelivered": False}.get(status)
        if page["channel"] == "CALL"
        else None,
        "call_seconds": page["call_seconds"],
        "answered_by": page["answered_by"],
    }


def detail(found: Mapping[str, Any]) -> dict[str, Any]:
    """The incident with its alerts and one timeline: its events and its pages, oldest first."""
    timeline = [
        {
            "at": e["created_at"],
            "kind": e["kind"],
            "actor": e["actor"],
            "user_id": _id(e["user_id"]),
            "alert_id": _id(e["alert_id"]),
            "text": e["text"],
            "delivery": None,
        }
        for e in found["events"]
    ]
    timeline += [
        {
            "at": p["created_at"],
            "kind": NOTICE_KINDS.get(p["kind"], "page"),
            "actor": "system",
            "user_id": None,
            "alert_id": _id(p["alert_id"]),
            "text": f"{p['channel']} to {shown_target(p['channel'], p['target'])}"
            + (f" (one message for {p['incidents']} incidents)" if p["kind"] == "bundle" else ""),
            "paged_user_id": _id(p["user_id"]),
            "delivery": {
                "id": str(p["id"]),
                "channel": p["channel"],
                "target": shown_target(p["channel"], p["target"]),
                "status": p["status"],
                "attempts": p["attempts"],
                "last_error": p["last_error"],
                "finished_at": p["finished_at"],
                "provider_id": p["provider_id"],
                "receipt": _receipt(p),
                "possibly_duplicated": p["possibly_duplicated"],
            },
        }
        for p in found["pages"]
    ]
    timeline += [
        {
            "at": p["created_at"],
            "kind": "page",
            "actor": "system",
            "user_id": None,
            "alert_id": None,
            "text": f"{p['channel']} to {p['target']}: {p['status']}"
            + (f" ({p['reason']})" if p["reason"] else f", due {p['due_at'].isoformat()}"),
            "paged_user_id": _id(p["user_id"]),  # None: a channel target's page
            "delivery": None,
            "page": {"id": str(p["id"]), "status": p["status"], "reason": p["reason"], "due_at": p["due_at"]},
        }
        for p in found.get("unsent", [])
    ]
    timeline.sort(key=lambda entry: entry["at"])
    alerts = [
        {
            "id": str(a["id"]),
            "title": a["title"],
            "severity": a["severity"],
            "format": a["format"],
            "resolved": a["resolved"],
            "status": a["status"],
            "received_at": a["received_at"],
        }
        for a in found["alerts"]
    ]
    return {**to_api(found["incident"]), "alerts": alerts, "timeline": timeline}
