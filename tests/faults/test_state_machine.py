"""Issue 17, scenario 10: a Hypothesis state machine over the public API and real workers.

A real `monoduty api` and two `monoduty worker` processes, the local ntfy as provider. Each webhook
escalates under a policy of its own (two 6-second steps, each paging a push topic of the webhook).
The rules: create, pause, resume and delete webhooks, post alerts of a few repeating dedup keys,
acknowledge or resolve an incident, SIGKILL a worker and start another. After every step: each live
webhook's statistics (``GET /api/webhooks/{id}``) add up (total = successful + failed + pending)
and equal its alert rows. At the end of each run: every accepted alert still stored is final, and
no incident was paged after its acknowledge, judged at the provider (a push naming the incident
that arrived later than the acknowledge's answer plus an in-flight allowance) and in the rows (no
page delivery made after ``acknowledged_at``).

Bounded: the CI profile (``-m slow``) is a few short runs, tens of seconds; ``MONODUTY_FAULTS=full``
runs many more and longer ones. Figures: tests/faults/results/statemachine.{json,md}.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.faults.figures import FULL_WANTED, write_figures
from tests.faults.storm import PUBLIC_URL, Workers, api_process, worker_env
from tests.support.factories import Account
from tests.support.processes import ApiProcess, wait_until
from tests.support.providers import FakeProviders, SmtpServer
from tests.support.services import Services

T = TypeVar("T")
KEYS = ["db", "disk", "cpu"]
MAX_KILLS = 2  # per run: each kill delays that worker's jobs by its claim's lapse (job timeout + 5 s)
# A push already on its way when the acknowledge was answered may land just after it.
IN_FLIGHT_SECONDS = 2.0
# Generation only: no example database, no shrinking. A failure never reaches Hypothesis (see
# ``guarded``): it would replay or extend the failing sequence against processes whose state is
# not the machine's, and stop on its own consistency checks instead of reporting what failed.
COMMON = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "database": None,
    "phases": [Phase.generate],
}
PROFILE = (
    settings(max_examples=25, stateful_step_count=30, **COMMON)
    if FULL_WANTED
    else settings(max_examples=8, stateful_step_count=20, **COMMON)
)


class World:
    """What every run of the machine shares: the processes, the session, and what was seen."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        api: ApiProcess,
        http: aiohttp.ClientSession,
        pool: asyncpg.Pool,
        account: Account,
        fake: FakeProviders,
        workers: Workers,
    ) -> None:
        self.loop, self.api, self.http, self.pool = loop, api, http, pool
        self.account, self.fake, self.workers = account, fake, workers
        self.failure: dict[str, Any] | None = None  # the first, with the run's steps up to it
        self.figures: dict[str, Any] = {
            "runs": 0,
            "steps": 0,
            "alerts_accepted": 0,
            "acks": 0,
            "kills": 0,
            "late_pages": [],
            "not_final": [],
            "counter_mismatches": [],
        }

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)


def guarded(world: World, fallback: Any = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Run a step, recording it; the first failure is kept with the run's steps, not raised, and
    every later step does nothing. Raised into Hypothesis, a failure against live processes ends
    in its "inconsistent data generation" (FlakyStrategyDefinition): the same steps, replayed or
    extended by a later example, met processes in another state, failed elsewhere or not at all,
    and drew differently; the failure itself was lost. What Hypothesis draws depends only on the
    machine's own state (a step returns ``fallback`` for its bundle instead of failing)."""

    def wrap(step: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(step)
        def run(machine: Any, *args: Any, **named: Any) -> T:
            shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in named.items()]
            machine.steps.append(f"{step.__name__}({', '.join(shown)})")
            if world.failure is not None:
                return fallback  # type: ignore[no-any-return]
            try:
                return step(machine, *args, **named)
            except Exception as exc:
                world.failure = {
                    "run": world.figures["runs"],
                    "steps": list(machine.steps),
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "traceback": traceback.format_exc()[-4000:],
                }
                return fallback  # type: ignore[no-any-return]

        return run

    return wrap


def machine(world: World) -> type[RuleBasedStateMachine]:
    step = guarded(world)

    class ApiAndWorkers(RuleBasedStateMachine):
        webhooks = Bundle("webhooks")

        def __init__(self) -> None:
            super().__init__()
            world.figures["runs"] += 1
            self.live: dict[str, dict[str, Any]] = {}
            self.accepted: list[str] = []
            self.acked: dict[str, float] = {}  # incident id -> when the acknowledge was answered (epoch)
            self.kills = 0
            self.steps: list[str] = []

        @initialize(target=webhooks)
        @guarded(world, fallback="")
        def first_webhook(self) -> str:
            # Every run starts with a webhook and an alert: the shortest runs still page someone.
            webhook = self.create_webhook()
            self.post_alerts(webhook, KEYS[0], 1)
            return webhook

        async def _json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with world.http.request(
                method, world.api.url + path, json=body, headers=world.account.headers
            ) as r:
                return r.status, await r.json()

        @rule(target=webhooks)
        @guarded(world, fallback="")
        def create_webhook(self) -> str:
            tag = f"sm-{uuid.uuid4().hex[:8]}"
            steps = [
                {
                    "delayMinutes": 0.1,
                    "targets": [{"type": "channel", "channel": "PUSH_NOTIF", "target": f"{tag}-{n}"}],
                }
                for n in (1, 2)
            ]
            status, policy = world.run(
                self._json("POST", "/api/escalation-policies", {"name": tag, "repeat": 0, "steps": steps})
            )
            assert status == 201, policy
            body = {
                "name": tag,
                "notificationTypes": ["PUSH_NOTIF"],
                "targetChannels": {"push": f"{tag}-0"},
                "escalationPolicyId": policy["escalation_policy"]["id"],
            }
            status, made = world.run(self._json("POST", "/api/webhooks", body))
            assert status == 201, made
            webhook = made["webhook"]
            self.live[webhook["id"]] = {**webhook, "tag": tag, "paused": False}
            return str(webhook["id"])

        @rule(webhook=webhooks, paused=st.booleans())
        @step
        def pause_or_resume(self, webhook: str, paused: bool) -> None:
            if webhook not in self.live:
                return
            status, _ = world.run(
                self._json("PATCH", f"/api/webhooks/{webhook}", {"status": "PAUSED" if paused else "ACTIVE"})
            )
            assert status == 200
            self.live[webhook]["paused"] = paused

        @rule(webhook=webhooks)
        @step
        def delete_webhook(self, webhook: str) -> None:
            if webhook not in self.live:
                return
            status, _ = world.run(self._json("DELETE", f"/api/webhooks/{webhook}"))
            assert status in (200, 204)
            del self.live[webhook]

        @rule(webhook=webhooks, key=st.sampled_from(KEYS), count=st.integers(1, 4))
        @step
        def post_alerts(self, webhook: str, key: str, count: int) -> None:
            if webhook not in self.live:
                return
            hook = self.live[webhook]
            url = world.api.url + hook["webhook_url"].removeprefix(PUBLIC_URL)

            async def post() -> list[tuple[int, Any]]:
                answers = []
                for _ in range(count):
                    async with world.http.post(url, json={"title": f"{key} down", "dedup_key": key}) as r:
                        answers.append((r.status, await r.json()))
                return answers

            for status, body in world.run(post()):
                assert status == (409 if hook["paused"] else 202), (status, body)
                if status == 202:
                    self.accepted.append(body["alert_id"])
                    world.figures["alerts_accepted"] += 1

        @rule(pick=st.integers(0, 1000), resolve=st.booleans())
        @step
        def acknowledge_or_resolve(self, pick: int, resolve: bool) -> None:
            ids = [uuid.UUID(w) for w in self.live]
            if not ids:
                return

            async def open_ones() -> list[asyncpg.Record]:
                async with world.pool.acquire() as conn:
                    return await conn.fetch(
                        "SELECT id FROM incidents WHERE webhook_id = ANY($1::uuid[]) AND status = 'triggered'"
                        " ORDER BY id",
                        ids,
                    )

            rows = world.run(open_ones())
            if not rows:
                return
            # An index, not a draw from the rows: what Hypothesis draws must not depend on the system.
            incident = str(rows[pick % len(rows)]["id"])
            action = "resolve" if resolve else "acknowledge"
            status, body = world.run(self._json("POST", f"/api/incidents/{incident}/{action}", {}))
            assert status in (200, 409), body  # 409: the incident moved on meanwhile
            if status == 200:
                self.acked.setdefault(incident, time.time())
                world.figures["acks"] += 1

        @precondition(lambda self: self.kills < MAX_KILLS)
        @rule()
        def kill_a_worker(self) -> None:
            self.kills += 1  # counted even after a failure: the precondition steers what is drawn
            self.kill()

        @step
        def kill(self) -> None:
            world.run(asyncio.to_thread(world.workers.kill_one))
            world.figures["kills"] += 1

        @invariant()
        @step
        def statistics_add_up(self) -> None:
            world.figures["steps"] += 1
            hooks = list(self.live.values())
            wrong = world.run(consistent_mismatches(world, [h["id"] for h in hooks]))
            world.figures["counter_mismatches"] += wrong
            assert wrong == []

        def teardown(self) -> None:
            self.settle()

        @step
        def settle(self) -> None:
            world.run(self._settle())

        async def _settle(self) -> None:
            ids = [uuid.UUID(a) for a in self.accepted]

            async def pending() -> list[str]:
                async with world.pool.acquire() as conn:
                    rows = await conn.fetch(
                        "SELECT id FROM alerts WHERE id = ANY($1::uuid[]) AND status = 'pending'", ids
                    )
                return [str(r["id"]) for r in rows]

            try:
                await wait_until(lambda: _empty(pending()), "every accepted alert final", 90)
            except AssertionError:
                world.figures["not_final"] += await pending()
                raise
            # Pages of an acknowledged incident: none made after its acknowledge, none received later.
            async with world.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT i.id, i.number, extract(epoch FROM i.acknowledged_at)::float8 AS acked,"
                    " (SELECT count(*) FROM pages p JOIN deliveries d ON d.id = p.delivery_id"
                    "  WHERE p.incident_id = i.id AND d.created_at > i.acknowledged_at) AS later"
                    " FROM incidents i WHERE i.id = ANY($1::uuid[]) AND i.acknowledged_at IS NOT NULL",
                    [uuid.UUID(i) for i in self.acked],
                )
            for row in rows:
                answered = self.acked[str(row["id"])]
                named = re.compile(rf"#{row['number']}\b")
                late = [
                    r
                    for r in world.fake.requests
                    if r.kind == "push"
                    and r.at > answered + IN_FLIGHT_SECONDS
                    and (named.search(r.headers.get("Title", "")) or named.search(r.body))
                ]
                if row["later"] or late:
                    world.figures["late_pages"].append(
                        {"incident": str(row["id"]), "rows": row["later"], "pushes": len(late)}
                    )
            assert world.figures["late_pages"] == []

    return ApiAndWorkers


ROWS = """
SELECT count(*) AS total, count(*) FILTER (WHERE status = 'successful') AS successful,
    count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'pending') AS pending
FROM alerts WHERE webhook_id = $1
"""


async def consistent_mismatches(world: World, webhook_ids: list[str]) -> list[str]:
    """Each webhook's statistics against its rows, read while the rows held still: the workers
    keep finishing alerts, and rows read before or after the GET alone may be a moment apart
    (the machine's first full run took that moment for a mismatch)."""
    wrong = []
    for webhook_id in webhook_ids:
        for _ in range(50):
            async with world.pool.acquire() as conn:
                before = dict(await conn.fetchrow(ROWS, uuid.UUID(webhook_id)) or {})
            path = f"{world.api.url}/api/webhooks/{webhook_id}"
            async with world.http.get(path, headers=world.account.headers) as resp:
                assert resp.status == 200, await resp.text()
                stats = (await resp.json())["webhook"]["statistics"]
            async with world.pool.acquire() as conn:
                after = dict(await conn.fetchrow(ROWS, uuid.UUID(webhook_id)) or {})
            if before == after:
                break
        else:
            continue  # never still for long enough to judge (not seen in practice)
        answered = {k: stats[f"{k}_calls"] for k in ("total", "successful", "failed", "pending")}
        adds_up = answered["total"] == answered["successful"] + answered["failed"] + answered["pending"]
        if answered != after or not adds_up:
            wrong.append(f"webhook {webhook_id}: statistics {answered}, rows {after}")
    return wrong


def failure_notes(failure: dict[str, Any] | None) -> list[str]:
    """The first failure for the figures: what failed and the steps of its run that led to it."""
    if failure is None:
        return []
    return [f"First failure, in run {failure['run']}: {failure['error']}", "", "Its steps:", ""] + [
        f"{n}. `{s}`" for n, s in enumerate(failure["steps"], 1)
    ]


async def _empty(values: Coroutine[Any, Any, list[str]]) -> bool:
    return not await values


@pytest.mark.slow
@pytest.mark.timeout(1800 if FULL_WANTED else 300)
async def test_the_api_and_workers_keep_their_invariants_under_any_sequence(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    failure: str | None = None
    began = time.monotonic()
    with SmtpServer() as smtp:
        env = {**worker_env(services, fake_providers, smtp), "MONODUTY_ESCALATION_SWEEP_SECONDS": "1"}
        # Every step reads each live webhook's statistics: a full run asks more of the API than its
        # per-key limit (600 a minute) allows, and a 429 is not what the machine tests.
        env["MONODUTY_RATE_LIMIT_API"] = "1000000/minute"
        async with api_process(services, env, tmp_path) as api, aiohttp.ClientSession() as http:
            workers = Workers(env, tmp_path, random.Random(10))
            world = World(asyncio.get_running_loop(), api, http, pool, account, fake_providers, workers)
            try:
                for proc in workers.procs:
                    await wait_until(lambda p=proc: "Starting worker" in p.output(), "a worker to start", 60)
                await asyncio.to_thread(run_state_machine_as_test, machine(world), settings=PROFILE)
            except Exception as exc:  # Hypothesis itself (the steps' failures are in world.failure)
                failure = f"{type(exc).__name__}: {exc}"[:2000]
            finally:
                world.figures["worker_exits"] = workers.died()
                await asyncio.to_thread(workers.stop)
    f = world.figures
    f["seconds"] = round(time.monotonic() - began, 1)
    f["profile"] = "full" if FULL_WANTED else "CI"
    f["hypothesis_error"] = failure
    f["failure"] = world.failure
    write_figures(
        "statemachine",
        "Hypothesis state machine (issue 17, scenario 10)",
        "Written by tests/faults/test_state_machine.py: one `monoduty api`, 3 workers (SIGKILLed by a rule), "
        "webhooks escalating under their own policies, the local ntfy",
        [
            [
                "profile",
                "runs",
                "steps checked",
                "alerts accepted",
                "acks/resolves",
                "kills",
                "counter mismatches",
                "not final",
                "pages after an ack",
                "seconds",
                "first failure",
            ],
            [
                f["profile"],
                str(f["runs"]),
                str(f["steps"]),
                str(f["alerts_accepted"]),
                str(f["acks"]),
                str(f["kills"]),
                str(len(f["counter_mismatches"])),
                str(len(f["not_final"])),
                str(len(f["late_pages"])),
                str(f["seconds"]),
                "none" if world.failure is None else f"run {world.failure['run']}: see below",
            ],
        ],
        f,
        tmp_path,
        notes=failure_notes(world.failure),
    )
    assert world.failure is None, failure_notes(world.failure)
    assert failure is None, failure
    assert f["worker_exits"] == []
