"""Handlers for /api/api-keys: list, create (the secret shown once), revoke; a key as the API shows it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from api.auth import current_user
from api.inputs import fields, json_body, query
from api.responses import ok
from api.state import POOL, REDIS
from engine import limits
from engine.auth import api_keys
from engine.validate import UNSET

routes = web.RouteTableDef()


@routes.get("/api/api-keys")
async def list_keys(request: web.Request) -> web.Response:
    user = current_user(request)
    limit, offset = limits.page(query(request, "limit", "offset"))
    async with request.app[POOL].acquire() as conn:
        records, total = await api_keys.list_keys(conn, user.id, limit, offset)
    return ok(api_keys=[to_api(r) for r in records], total=total, limit=limit, offset=offset)


@routes.post("/api/api-keys")
async def create_key(request: web.Request) -> web.Response:
    user = current_user(request)
    asked = fields(await json_body(request), {"name": "name"}, text=("name",))
    async with request.app[POOL].acquire() as conn:
        secret, record = await api_keys.new_key(conn, user.id, asked.get("name", UNSET))
    return ok(201, api_key={**to_api(record), "key": secret})


@routes.delete("/api/api-keys/{id}")
async def revoke_key(request: web.Request) -> web.Response:
    user = current_user(request)
    key_id = api_keys.parse_id(request.match_info["id"])
    async with request.app[POOL].acquire() as conn:
        await api_keys.revoke(conn, request.app[REDIS], user.id, key_id)
    return ok(revoked=str(key_id))


def to_api(record: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(record["id"]),
        "name": record["name"],
        "prefix": record["prefix"],
        "created_at": record["created_at"],
        "last_used_at": record["last_used_at"],
    }
