"""PostgreSQL access: the pool, the schema, and small helpers shared by the engine's modules."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import sysconfig
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool

# What the engine's functions take: a connection of their own or one borrowed from the pool. The
# pool's proxy forwards every call to the connection; asyncpg's stubs keep the two types apart.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


def _schema_path() -> Path:
    """schema.sql at the root of the source tree (a checkout, ``pip install -e .``), else where
    ``pip install .`` puts it: ``<prefix>/share/monoduty/schema.sql`` (see pyproject.toml)."""
    candidates = [
        Path(__file__).resolve().parent.parent / "schema.sql",
        Path(sys.prefix) / "share" / "monoduty" / "schema.sql",
        Path(sysconfig.get_path("data")) / "share" / "monoduty" / "schema.sql",
    ]
    return next((path for path in candidates if path.is_file()), candidates[0])


SCHEMA_PATH = _schema_path()

# One lock id so that two processes migrating at once run the schema one after the other.
_MIGRATE_LOCK = 0x6D6F6E6F  # "mono"


async def _init_connection(conn: Connection) -> None:
    # jsonb columns come back as Python objects and take them as parameters.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _pooler_options(pgbouncer: bool) -> dict[str, Any]:
    # Behind PgBouncer in transaction mode each transaction may run on another server connection,
    # so a statement prepared by name on one is unknown on the next (or, worse, a name another
    # client used is there already). asyncpg then prepares every query unnamed, in the same
    # round trip as its execution, as its documentation asks for PgBouncer.
    return {"statement_cache_size": 0} if pgbouncer else {}


async def _keep_session(conn: Connection) -> None:
    """The pool's reset on release, after asyncpg's own (a ROLLBACK if a transaction is still open,
    its listener callbacks dropped): nothing more, one round trip fewer per release than asyncpg's
    default (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL), which undoes session state
    Monoduty never leaves on a pooled connection: its advisory locks are transaction locks
    (pg_advisory_xact_lock), its cursors (``stream``) are declared inside a transaction and end
    with it, it changes no setting (no SET) and makes no temporary table, and it LISTENs
    only on a connection of its own (engine.incidents.live), never a pooled one. Behind PgBouncer
    a session state would not survive to the next transaction anyway. tests/test_db_pool.py holds
    a pooled connection to that; whatever starts keeping session state on one must reset it."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, pgbouncer: bool = False
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python values; ``pgbouncer``: ``dsn`` is PgBouncer's
    transaction pool (``Settings.pgbouncer``)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        **_pooler_options(pgbouncer),
    )
    assert pool is not None
    return pool


async def connect(dsn: str, *, pgbouncer: bool = False) -> asyncpg.Connection:
    """One connection, for commands that do a single thing and exit."""
    conn = await asyncpg.connect(dsn, **_pooler_options(pgbouncer))
    await _init_connection(conn)
    return conn


_stream_ids = itertools.count(1)


async def stream(conn: Connection, query: str, *args: Any, batch: int = 500) -> AsyncIterator[asyncpg.Record]:
    """The rows of ``query``, ``batch`` at a time from a server-side cursor; call inside a transaction.

    An SQL cursor (DECLARE, FETCH) rather than asyncpg's ``conn.cursor``: that one prepares its
    query by name, and behind PgBouncer's transaction pool the name outlives the transaction on a
    server connection another client then gets ("prepared statement ... already exists").
    """
    name = f"monoduty_stream_{next(_stream_ids)}"
    await conn.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {query}", *args)
    fetch = f"FETCH {int(batch)} FROM {name}"
    while rows := await conn.fetch(fetch):
        for row in rows:
            yield row
    await conn.execute(f"CLOSE {name}")  # a stream left early is closed by the transaction's end


def _quiet(step: str) -> None:
    pass


async def apply_schema(
    conn: Connection, schema_path: Path = SCHEMA_PATH, progress: Callable[[str], None] = _quiet
) -> None:
    """Apply schema.sql; safe to repeat, and serialised across processes by an advisory lock.

    ``progress`` is told each step as it starts (the CLI prints them), including a wait for
    another process's migration, the one step that can take long on an idle database.
    """
    sql = await asyncio.to_thread(schema_path.read_text)
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _MIGRATE_LOCK):
            progress("waiting for another migration to finish")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        statements = sum(1 for line in sql.splitlines() if line.rstrip().endswith(";"))
        progress(f"applying {schema_path.name} (about {statements} statements, one transaction)")
        await conn.execute(sql)


async def migrate(dsn: str, progress: Callable[[str], None] = _quiet) -> None:
    """Connect and apply the schema, reporting each step to ``progress``."""
    started = time.monotonic()
    progress("connecting to PostgreSQL")
    conn = await asyncpg.connect(dsn)
    try:
        await apply_schema(conn, progress=progress)
    finally:
        await conn.close()
    progress(f"done in {time.monotonic() - started:.1f}s")
