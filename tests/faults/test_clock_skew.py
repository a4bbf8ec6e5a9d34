"""Issue 17, scenario 7: workers whose clocks are 10 minutes ahead and 10 minutes behind.

Real processes: one `monoduty api` on the true clock and three `monoduty worker`s, one on the
true clock and two under libfaketime (``FAKETIME=+10m`` and ``-10m``), all taking one queue. Each
alert opens an incident of its own policy, two 10-second steps each paging a push topic of its own
(so no page is bundled with another's). Judged at the provider (the local ntfy): each step's page
arrives once, the second no sooner than the step's delay after the first, whichever worker ran
either step. Before the fix a worker 10 minutes ahead ran at once any step another worker had set
due within 10 minutes, and one behind set its steps due in the past. Then only the worker 10
minutes behind is left: it must take a fresh alert at once (arq scored and polled jobs on each
process's own clock, so that worker saw the API's jobs as deferred by 10 minutes).
Figures: tests/faults/results/clock.{json,md}.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.faults.figures import write_figures
from tests.faults.storm import PUBLIC_URL, api_process, worker_env
from tests.support.factories import Account
from tests.support.faults import WorkerProcess
from tests.support.processes import ApiProcess, wait_until
from tests.support.providers import FakeProviders, SmtpServer
from tests.support.services import Services

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SKEWS = {"true": None, "ahead": "+10m", "behind": "-10m"}
STEP_SECONDS = 10
INCIDENTS = 6
# A page's arrival trails its step by a queue hop and a provider call: the gap between two steps'
# pages may come out this much under the step's delay without either step being early.
JITTER_SECONDS = 2.0


def skewed(env: dict[str, str], offset: str | None) -> dict[str, str]:
    if offset is None:
        return env
    return {**env, "LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@dataclass
class Escalating:
    """A webhook escalating under a policy of its own: step 1 pages ``first``, step 2 ``second``."""

    url: str
    first: str
    second: str


async def post_json(http: aiohttp.ClientSession, url: str, body: dict[str, Any], account: Account) -> Any:
    async with http.post(url, json=body, headers=account.headers) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def escalating(http: aiohttp.ClientSession, api: ApiProcess, account: Account, tag: str) -> Escalating:
    first, second = f"{tag}-step1", f"{tag}-step2"
    steps = [
        {
            "delayMinutes": STEP_SECONDS / 60,
            "targets": [{"type": "channel", "channel": "PUSH_NOTIF", "target": t}],
        }
        for t in (first, second)
    ]
    body = {"name": tag, "repeat": 0, "steps": steps}
    policy = (await post_json(http, f"{api.url}/api/escalation-policies", body, account))["escalation_policy"]
    hook = {
        "name": tag,
        "notificationTypes": ["PUSH_NOTIF"],
        "targetChannels": {"push": f"{tag}-direct"},
        "escalationPolicyId": policy["id"],
    }
    webhook = (await post_json(http, f"{api.url}/api/webhooks", hook, account))["webhook"]
    return Escalating(api.url + webhook["webhook_url"].removeprefix(PUBLIC_URL), first, second)


def arrivals(fake: FakeProviders, topic: str) -> list[float]:
    return [r.at for r in fake.requests if r.kind == "push" and r.target == topic]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_workers_ten_minutes_off_neither_escalate_early_nor_page_twice(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    assert Path(LIBFAKETIME).exists(), "Debian's faketime package"
    run = uuid.uuid4().hex[:6]
    alive: dict[str, bool] = {}
    exits: dict[str, int] = {}
    lone_latency: float | None = None
    failure: str | None = None
    with SmtpServer() as smtp:
        env = {**worker_env(services, fake_providers, smtp), "MONODUTY_ESCALATION_SWEEP_SECONDS": "1"}
        async with api_process(services, env, tmp_path) as api, aiohttp.ClientSession() as http:
            hooks = [await escalating(http, api, account, f"skew-{run}-{n}") for n in range(INCIDENTS + 1)]
            shared, lone = hooks[:-1], hooks[-1]
            workers = {
                name: WorkerProcess(tmp_path / f"worker-{name}.log", **skewed(env, offset))
                for name, offset in SKEWS.items()
            }

            async def alert(hook: Escalating) -> None:
                async with http.post(hook.url, json={"title": "checkout down"}) as resp:
                    assert resp.status == 202, await resp.text()

            try:
                for proc in workers.values():
                    await wait_until(lambda p=proc: "Starting worker" in p.output(), "a worker to start", 60)
                for hook in shared:
                    await alert(hook)
                # Both steps of every incident, or a step 10 minutes late: the deadline says which.
                await wait_until(
                    lambda: all(arrivals(fake_providers, h.second) for h in shared),
                    "every incident's second step",
                    3 * STEP_SECONDS + 30,
                )

                async def exhausted() -> bool:
                    async with pool.acquire() as conn:
                        left = await conn.fetchval(
                            "SELECT count(*) FROM incidents WHERE next_escalation_at IS NOT NULL"
                        )
                    return left == 0

                # Every policy run out, so that a second page of a step would have been seen.
                await wait_until(exhausted, "every policy exhausted", 2 * STEP_SECONDS + 30)

                alive = {name: proc.alive() for name, proc in workers.items()}
                for name in ("true", "ahead"):
                    await asyncio.to_thread(workers[name].stop)
                # Only the worker 10 minutes behind: it takes a fresh alert as soon as it is queued.
                posted = time.time()
                await alert(lone)
                await wait_until(
                    lambda: arrivals(fake_providers, lone.first), "the lone skewed worker's page", 60
                )
                lone_latency = arrivals(fake_providers, lone.first)[0] - posted
                await wait_until(
                    lambda: arrivals(fake_providers, lone.second),
                    "the lone worker's second step",
                    3 * STEP_SECONDS,
                )
                await wait_until(exhausted, "the lone policy exhausted", 2 * STEP_SECONDS + 30)
            except AssertionError as exc:
                failure = str(exc)
            finally:
                exits = {name: await asyncio.to_thread(proc.stop) for name, proc in workers.items()}

    per_incident = []
    for hook in hooks:
        one, two = arrivals(fake_providers, hook.first), arrivals(fake_providers, hook.second)
        per_incident.append(
            {
                "first_topic": hook.first,
                "step1_pages": len(one),
                "step2_pages": len(two),
                "gap_s": round(min(two) - min(one), 2) if one and two else None,
            }
        )
    gaps = [p["gap_s"] for p in per_incident if p["gap_s"] is not None]
    wrong_counts = [p for p in per_incident if (p["step1_pages"], p["step2_pages"]) != (1, 1)]
    figures = {
        "step_seconds": STEP_SECONDS,
        "incidents": per_incident,
        "min_gap_s": min(gaps, default=None),
        "max_gap_s": max(gaps, default=None),
        "duplicate_pages": sum(
            max(0, p["step1_pages"] - 1) + max(0, p["step2_pages"] - 1) for p in per_incident
        ),
        "lone_behind_worker_alert_to_page_s": None if lone_latency is None else round(lone_latency, 2),
        "workers_alive_before_stop": alive,
        "exit_codes": exits,
        "failure": failure,
    }
    write_figures(
        "clock",
        "Clock skew (issue 17, scenario 7)",
        "Written by tests/faults/test_clock_skew.py. Three workers on one queue: true clock, +10 min "
        f"and -10 min (libfaketime); {len(hooks)} incidents, each of a policy with two {STEP_SECONDS} s "
        "steps paging a push topic; the last one with only the -10 min worker left",
        [
            [
                "incidents",
                "steps paged once each",
                "duplicates",
                "step gap min / max",
                "-10 min worker alone: alert to page",
            ],
            [
                str(len(hooks)),
                "yes" if not wrong_counts else f"NO ({len(wrong_counts)})",
                str(figures["duplicate_pages"]),
                f"{min(gaps, default=0):g} / {max(gaps, default=0):g} s (delay {STEP_SECONDS} s)",
                "never" if lone_latency is None else f"{lone_latency:.1f} s",
            ],
        ],
        figures,
        tmp_path,
    )
    assert failure is None, failure
    assert alive and all(alive.values()), alive
    assert wrong_counts == []
    assert min(gaps) >= STEP_SECONDS - JITTER_SECONDS, per_incident
    assert exits == {name: 0 for name in SKEWS}, exits
