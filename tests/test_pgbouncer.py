"""PostgreSQL behind a real PgBouncer in transaction mode (tests/support/pgbouncer.py), with real
`monoduty` processes on ``MONODUTY_DATABASE_URL`` pointing at it and
``MONODUTY_DATABASE_POOLER=pgbouncer``: migrate, users create, the API and a worker, end to end.

The server pool is smaller than the clients' pools, so transactions of different client
connections share server connections: a statement prepared by name, a session setting or a LISTEN
would break here (asyncpg's defaults fail at once: "prepared statement ... does not exist").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.support.faults import WorkerProcess
from tests.support.pgbouncer import PgBouncer
from tests.support.processes import ApiProcess, monoduty, monoduty_env, wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services

PASSWORD = "correct horse battery staple"
ALERTS = 30


async def read_events(session: aiohttp.ClientSession, seen: list[str]) -> None:
    """The dashboard's event stream, each ``event:`` name appended as it comes."""
    async with session.get("/events", headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if line.startswith(b"event:"):
                seen.append(line.decode().removeprefix("event:").strip())


@pytest.mark.slow
async def test_the_whole_path_runs_through_pgbouncer_in_transaction_mode(
    services: Services, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    bouncer = PgBouncer(tmp_path / "pgbouncer", services.database_url, pool_size=3)
    bouncer.start()
    env = {
        "MONODUTY_DATABASE_URL": bouncer.url,
        "MONODUTY_DATABASE_POOLER": "pgbouncer",
        "MONODUTY_DATABASE_DIRECT_URL": services.database_url,  # LISTEN and migrations
        "MONODUTY_REDIS_URL": services.redis_url,
        "MONODUTY_NTFY_URL": fake_providers.url,
        "MONODUTY_RATE_LIMIT_API": "100000/minute",  # the test polls the API while it waits
    }
    cli_env = monoduty_env(**env)
    api: ApiProcess | None = None
    worker: WorkerProcess | None = None
    events: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(monoduty, "migrate", env=cli_env)
        email = f"pgb-{uuid.uuid4().hex[:8]}@example.com"
        created = await asyncio.to_thread(
            monoduty, "users", "create", "--email", email, "--password", PASSWORD, "--json", env=cli_env
        )
        key = json.loads(created.stdout)["api_key"]
        settings = {k: v for k, v in env.items() if k not in ("MONODUTY_DATABASE_URL", "MONODUTY_REDIS_URL")}
        api = ApiProcess(
            Services(bouncer.url, services.redis_url),
            tmp_path / "api.log",
            MONODUTY_REQUIRE_HTTPS="off",
            **settings,
        )
        worker = WorkerProcess(tmp_path / "worker.log", **env)
        auth = {"Authorization": f"Bearer {key}"}
        async with (
            aiohttp.ClientSession(
                api.url,
                cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies from 127.0.0.1, as a browser keeps them
            ) as browser,
            aiohttp.ClientSession(api.url) as client,
        ):
            # A signed-in dashboard with its live updates open (LISTEN, on the direct URL).
            resp = await browser.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert resp.status == 200, await resp.text()
            seen: list[str] = []
            events = asyncio.create_task(read_events(browser, seen))
            await wait_until(lambda: "resync" in seen or events.done(), "the event stream to open")
            assert not events.done(), events.result()

            resp = await client.post(
                "/api/escalation-policies",
                json={
                    "name": "through pgbouncer",
                    "steps": [
                        {
                            "delayMinutes": 60,
                            "targets": [{"type": "channel", "channel": "PUSH_NOTIF", "target": "step-one"}],
                        },
                        {
                            "delayMinutes": 60,
                            "targets": [{"type": "channel", "channel": "PUSH_NOTIF", "target": "step-two"}],
                        },
                    ],
                },
                headers=auth,
            )
            assert resp.status == 201, await resp.text()
            policy = (await resp.json())["escalation_policy"]
            hooks = []
            for name, extra in (
                ("plain", {"dedupBy": "none"}),
                ("paged", {"escalationPolicyId": policy["id"]}),
            ):
                resp = await client.post(
                    "/api/webhooks",
                    json={
                        "name": name,
                        "notificationTypes": ["PUSH_NOTIF"],
                        "targetChannels": {"push": "plain"},
                        **extra,
                    },
                    headers=auth,
                )
                assert resp.status == 201, await resp.text()
                hooks.append((await resp.json())["webhook"])
            plain, paged = (h["webhook_url"].removeprefix(api.url) for h in hooks)

            # A burst of alerts at once: many transactions over three server connections.
            async def post(n: int) -> int:
                async with client.post(plain, json={"title": f"burst {n}"}) as answer:
                    return answer.status

            assert await asyncio.gather(*[post(n) for n in range(ALERTS)]) == [202] * ALERTS

            async def burst_counted() -> bool:
                async with client.get("/api/webhooks", headers=auth) as answer:
                    assert answer.status == 200, await answer.text()
                    found = {w["id"]: w for w in (await answer.json())["webhooks"]}
                stats = found[hooks[0]["id"]]["statistics"]
                return stats["successful_calls"] == ALERTS and stats["total_calls"] == ALERTS

            await wait_until(burst_counted, "the burst to be delivered and counted", timeout=60)
            assert sorted(r.body for r in fake_providers.requests if r.target == "plain") == sorted(
                f"burst {n}" for n in range(ALERTS)
            )

            # An incident: paged by its policy's first step, escalated to the second, acknowledged.
            async with client.post(paged, json={"title": "db down", "dedup_key": "pgb-db"}) as answer:
                assert answer.status == 202
            await wait_until(
                lambda: any(r.target == "step-one" for r in fake_providers.requests),
                "step one's page",
                timeout=30,
            )
            await wait_until(lambda: "incident" in seen, "the dashboard to hear of the incident")
            async with client.get("/api/incidents", headers=auth) as answer:
                incidents = (await answer.json())["incidents"]
            incident = next(i for i in incidents if i["dedup_key"] == "pgb-db")
            async with client.post(f"/api/incidents/{incident['id']}/escalate", headers=auth) as answer:
                assert answer.status == 200, await answer.text()
            await wait_until(
                lambda: any(r.target == "step-two" for r in fake_providers.requests),
                "step two's page",
                timeout=30,
            )
            async with client.post(f"/api/incidents/{incident['id']}/acknowledge", headers=auth) as answer:
                assert answer.status == 200, await answer.text()
            async with client.get(f"/api/incidents/{incident['id']}", headers=auth) as answer:
                assert answer.status == 200
                shown = (await answer.json())["incident"]
            assert shown["status"] == "acknowledged" and shown["escalation_step"] == 1, shown

            # Reads: the dashboard's pages, the inbox, reports (a CSV streams from a cursor).
            for page in ("/", f"/incidents/{incident['id']}", "/inbox", "/reports", "/status"):
                async with browser.get(page) as answer:
                    assert answer.status == 200, (page, await answer.text())
            async with browser.get("/") as answer:
                assert "db down" in await answer.text()
            async with client.get("/api/notifications", headers=auth) as answer:
                assert answer.status == 200
            csvs = await asyncio.gather(
                *[
                    client.post(
                        "/api/reports/generate", json={"type": "detailed", "format": "csv"}, headers=auth
                    )
                    for _ in range(6)
                ]
            )
            for answer in csvs:
                assert answer.status == 200, await answer.text()
                assert (await answer.text()).count("burst ") == ALERTS
            # The same from other processes (`monoduty report`), on server connections the API's
            # reports ran on: a statement prepared by name there would be "already exists" here.
            for _ in range(3):
                report = await asyncio.to_thread(
                    monoduty,
                    "report",
                    "--type",
                    "detailed",
                    "--format",
                    "csv",
                    "--user",
                    email,
                    env=cli_env,
                    check=False,
                )
                assert report.returncode == 0, report.stderr[-2000:]
                assert report.stdout.count("burst ") == ALERTS, report.stderr
        stats = bouncer.stats()
        assert stats.get("total_xact_count", 0) > ALERTS * 3, stats  # it all went through PgBouncer
        assert worker.alive(), worker.output()[-3000:]
        for output in (api.output(), worker.output()):
            assert "Traceback" not in output and "prepared statement" not in output, output[-3000:]
    finally:
        if events is not None:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
        if worker is not None:
            worker.stop()
        if api is not None:
            api.stop()
        bouncer.stop()
