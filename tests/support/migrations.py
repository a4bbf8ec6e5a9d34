"""Databases made by an earlier schema.sql, for the tests of `monoduty migrate`.

- ``schema_before(marker)``: the newest schema.sql in git history that does not mention ``marker``.
- ``scratch_database(services)``: a fresh empty database on the test server, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.support.processes import ROOT
from tests.support.services import Services, database_named


def schema_before(marker: str) -> str:
    revisions = subprocess.run(
        ["git", "log", "--format=%H", "--", "schema.sql"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for revision in revisions:
        text = subprocess.run(
            ["git", "show", f"{revision}:schema.sql"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        if marker not in text:
            return text
    raise AssertionError(f"no schema.sql without {marker!r} in git history")


@asynccontextmanager
async def scratch_database(services: Services) -> AsyncIterator[str]:
    """The URL of a new empty database, dropped (connections and all) when the block ends."""
    admin = await asyncpg.connect(services.database_url)
    name = f"monoduty_migrate_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_named(services.database_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
