"""Handlers for /api/incidents: parse, call engine.incidents, answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import json_body, query
from api.responses import ok
from api.state import CLOCK, POOL, REDIS, REQUEST_ID
from engine import queue
from engine.incidents import actions, queries

routes = web.RouteTableDef()


@routes.get("/api/incidents")
async def list_incidents(request: web.Request) -> web.Response:
    """Newest first; ``?status=``, ``?webhook=``, ``?limit=``, ``?cursor=`` from ``next_cursor``."""
    user = current_user(request)
    params = query(request, "status", "webhook", "limit", "cursor")
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
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await actions.acknowledge(conn, user.id, incident_id, request.app[CLOCK].now())
        found = await queries.get_incident(conn, user.id, incident_id)
    return ok(incident=detail(found))


@routes.post("/api/incidents/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = actions.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        notices = await actions.resolve(conn, user.id, incident_id, request.app[CLOCK].now())
        for delivery_id in notices:
            await queue.enqueue_delivery(request.app[REDIS], str(delivery_id), request_id=request[REQUEST_ID])
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
    }


def _id(value: Any) -> str | None:
    return str(value) if value is not None else None


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
            "kind": "page" if p["kind"] == "page" else "resolved_notice",
            "actor": "system",
            "user_id": None,
            "alert_id": _id(p["alert_id"]),
            "text": f"{p['channel']} to {p['target']}",
            "delivery": {
                "id": str(p["id"]),
                "channel": p["channel"],
                "target": p["target"],
                "status": p["status"],
                "attempts": p["attempts"],
                "last_error": p["last_error"],
                "finished_at": p["finished_at"],
            },
        }
        for p in found["pages"]
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
