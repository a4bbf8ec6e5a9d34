"""An escalation from end to end: a real worker (cron sweeps and wake-up jobs), the real API, the
local SMS/voice/push providers and SMTP server, on a clock that runs 60 times as fast as the
real one, so a policy's minutes take seconds (tests/support/clock.py ScaledClock)."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.clock import ScaledClock
from tests.support.escalation import (
    add_rule,
    incident_of,
    new_policy,
    pages_of,
    step,
    verify_phones,
    worker_running,
)
from tests.support.factories import ALERT, WEBHOOK, Account, create, new_account, path_of
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders, SmtpServer
from tests.support.teams import add_member, new_team

# Clock minutes per real minute: a step 4 minutes after the last is 4 s away, room for a loaded machine.
RATE = 60


def sent(fake: FakeProviders) -> list[tuple[str, str]]:
    return [(r.kind, r.target) for r in fake.requests]


def emailed(smtp: SmtpServer) -> list[tuple[str, str]]:
    return [(str(m["To"]), str(m["Subject"])) for m in smtp.messages]


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_a_policy_pages_the_first_step_by_its_rules_then_the_backup_until_acknowledged(
    live: TestClient,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    primary = await new_account(pool, phone="+14155550111")
    backup = await new_account(pool, phone="+14155550122")
    team = await new_team(live, account, members={"responder": primary})
    await add_member(live, account, team["id"], backup, "responder")
    for person, topic in ((primary, "primary-topic"), (backup, "backup-topic")):
        await add_rule(live, person, "PUSH_NOTIF", topic, 0)  # beside the defaults: email 0, SMS 1, call 3
        await verify_phones(pool, person)
    policy = await new_policy(live, account, step(4, primary), step(4, backup), repeat=1, team_id=team["id"])
    webhook = await create(
        live, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    assert webhook["escalation_policy_id"] == policy["id"]
    clock = ScaledClock(RATE)
    settings = provider_settings.with_(escalation_sweep_seconds=1)

    async with worker_running(settings, clock):
        resp = await live.post(path_of(webhook), json=ALERT)
        assert resp.status == 202
        alert_id = (await resp.json())["alert_id"]
        await wait_until(
            lambda: ("push", "backup-topic") in sent(fake_providers), "the backup paged", timeout=30
        )
        incident = await incident_of(pool, alert_id)
        assert incident is not None
        resp = await live.post(f"/api/incidents/{incident['id']}/acknowledge", headers=account.headers)
        assert resp.status == 200
        acknowledged_at = clock.now()

        # The primary's rules fired in order, then step 2 paged the backup: nobody acknowledged.
        assert sent(fake_providers)[:4] == [
            ("push", "primary-topic"),
            ("sms", "+14155550111"),
            ("call", "+14155550111"),
            ("push", "backup-topic"),
        ]
        # Past when the backup's SMS and call, and the policy's repeat, would have come: nothing.
        await wait_until(
            lambda: (clock.now() - acknowledged_at).total_seconds() > 10 * 60,
            "ten policy minutes",
            timeout=30,
        )
        assert sent(fake_providers) == [
            ("push", "primary-topic"),
            ("sms", "+14155550111"),
            ("call", "+14155550111"),
            ("push", "backup-topic"),
        ]
        assert sorted(to for to, _ in emailed(smtp_server)) == sorted([primary.user.email, backup.user.email])
        pages = await pages_of(pool, incident["id"])
        assert {p["status"] for p in pages if p["user_id"] == backup.user.id} == {"sent", "cancelled"}
        assert all(p["reason"] == "incident acknowledged" for p in pages if p["status"] == "cancelled")
        shown = await (await live.get(f"/api/incidents/{incident['id']}", headers=account.headers)).json()
        assert shown["incident"]["assigned_to"] == [
            {"user_id": str(backup.user.id), "email": backup.user.email, "name": None}
        ]
        assert shown["incident"]["escalation_step"] == 1
        assert shown["incident"]["next_escalation_at"] is None
        kinds = [e["kind"] for e in shown["incident"]["timeline"]]
        assert kinds.count("escalated") == 2
        delivered = [e for e in shown["incident"]["timeline"] if e["delivery"]]
        assert {(e["paged_user_id"], e["delivery"]["status"]) for e in delivered} == {
            (str(primary.user.id), "delivered"),
            (str(backup.user.id), "delivered"),
        }

        # A resolve tells the people paged, on the webhook's notifyOnResolve channels (email, push).
        resp = await live.post(f"/api/incidents/{incident['id']}/resolve", headers=account.headers)
        assert resp.status == 200
        await wait_until(
            lambda: len(fake_providers.requests) == 6 and len(smtp_server.messages) == 4, "notices"
        )
    notices = fake_providers.requests[4:]
    assert sorted(r.target for r in notices) == ["backup-topic", "primary-topic"]
    assert all("RESOLVED #" in r.headers["Title"] for r in notices), [r.headers["Title"] for r in notices]
    assert all("RESOLVED #" in subject for _, subject in emailed(smtp_server)[2:])
    # The webhook's own targetChannels were never paged: its policy pages people instead.
    assert not {"+14155550123", "+14155550124", "prod-alerts"} & {r.target for r in fake_providers.requests}
