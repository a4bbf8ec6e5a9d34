"""PostgreSQL access: the pool, the schema, and small helpers shared by the engine's modules."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"

# One lock id so that two processes migrating at once run the schema one after the other.
_MIGRATE_LOCK = 0x6D6F6E6F  # "mono"


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns come back as Python objects and take them as parameters.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python values."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection, for commands that do a single thing and exit."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def apply_schema(conn: asyncpg.Connection, schema_path: Path = SCHEMA_PATH) -> None:
    """Apply schema.sql; safe to repeat, and serialised across processes by an advisory lock."""
    sql = await asyncio.to_thread(schema_path.read_text)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        await conn.execute(sql)


async def migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await apply_schema(conn)
    finally:
        await conn.close()


def record_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
