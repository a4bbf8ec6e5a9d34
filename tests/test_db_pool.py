"""The pool's cheap reset (engine.db._keep_session): a pooled connection handed out again carries
nothing over from its last user that matters, and its release costs no statement of its own."""

from __future__ import annotations

import asyncpg

from engine import db
from tests.support.services import Services

SESSION_STATE = """
SELECT pg_backend_pid() AS pid,
    (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors,
    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory,
    current_setting('statement_timeout') AS statement_timeout,
    pg_current_xact_id_if_assigned() IS NULL AS no_transaction
"""


async def _leave_state(conn: db.Connection, *, commit: bool) -> None:
    """What Monoduty's code does on a pooled connection that lives past one statement: a report's
    stream left early (its cursor still open), a migration's transaction lock, a local setting."""
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SET LOCAL statement_timeout = '1234ms'")
    await conn.execute("SELECT pg_advisory_xact_lock(4242)")
    await conn.execute("CREATE TABLE IF NOT EXISTS pool_reset_probe (n int)")
    rows = db.stream(conn, "SELECT generate_series(1, 2000)", batch=10)
    assert await anext(rows) is not None  # declared, fetched from, never closed
    await rows.aclose()
    await conn.execute("INSERT INTO pool_reset_probe VALUES (1)")
    if commit:
        await tx.commit()
    # else: released with the transaction open (an error path outside ``async with``)


async def test_a_released_connection_comes_back_clean(services: Services) -> None:
    pool = await db.create_pool(services.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            before = await conn.fetchrow(SESSION_STATE)
            await conn.execute("DROP TABLE IF EXISTS pool_reset_probe")
            await _leave_state(conn, commit=True)
        for commit in (True, False):
            async with pool.acquire() as conn:
                await _leave_state(conn, commit=commit)
            async with pool.acquire() as conn:
                after = await conn.fetchrow(SESSION_STATE)
                assert after["pid"] == before["pid"]  # the same server session, handed out again
                assert after["cursors"] == 0
                assert after["advisory"] == 0
                assert after["statement_timeout"] == before["statement_timeout"]
                assert after["no_transaction"]
        async with pool.acquire() as conn:  # the transaction left open was rolled back, not kept
            assert await conn.fetchval("SELECT count(*) FROM pool_reset_probe") == 2
            await conn.execute("DROP TABLE pool_reset_probe")
    finally:
        await pool.close()


async def test_a_release_sends_no_reset_statement(services: Services) -> None:
    pool = await db.create_pool(services.database_url, min_size=1, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            raw: asyncpg.Connection = conn._con  # type: ignore[attr-defined]
            raw.add_query_logger(lambda record: sent.append(record.query))
            await conn.fetchval("SELECT 1")
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 2")
        assert sent == ["SELECT 1", "SELECT 2"], sent  # asyncpg's default would add RESET ALL etc.
    finally:
        await pool.close()
