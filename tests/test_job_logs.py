"""arq logs every job it starts with the repr of its arguments (cut to 80 characters). An inbound
body may hold anything (a token, a password, a phone number): it must never reach that line."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.factories import Account, create, path_of, run_worker

SECRET = "hunter2-in-the-body"


async def test_arq_job_lines_never_show_the_inbound_body(
    client: TestClient, account: Account, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    webhook = await create(client, account, {"name": "logs", "notificationTypes": ["EMAIL"]})
    resp = await client.post(path_of(webhook), data=SECRET, headers={"Content-Type": "text/plain"})
    alert_id = (await resp.json())["alert_id"]
    with caplog.at_level(logging.INFO, logger="arq"):
        await run_worker(settings)
    started = [
        r.getMessage() for r in caplog.records if r.name.startswith("arq") and alert_id in r.getMessage()
    ]
    assert any("process_alert(" in line for line in started)  # arq did log the job's arguments
    assert not any(SECRET[:6] in r.getMessage() for r in caplog.records)
