"""What a page says, end to end: real Alertmanager and PagerDuty payloads through the app, a real
worker and the local providers (SMTP, Twilio, ntfy), read as the person paged would read them.

The Alertmanager payloads were captured from a real Alertmanager 0.25 (Debian's
prometheus-alertmanager) by tests/data/payloads/capture_alertmanager.py.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient

from engine.channels.sms import fits_one_segment
from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, create, path_of, run_worker
from tests.support.providers import FakeProviders, Request, SmtpServer

DATA = Path(__file__).parent / "data" / "payloads"


def payload(name: str) -> bytes:
    path = DATA / name
    return gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()


@dataclass
class Page:
    """One alert as each channel delivered it."""

    email: EmailMessage
    sms: Request
    call: Request
    push: Request

    @property
    def text(self) -> str:
        return self.email.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.email.get_body(("html",)).get_content()

    @property
    def said(self) -> list[str]:
        twiml = ET.fromstring(self.call.form["Twiml"])  # noqa: S314 - our own output
        return [element.text or "" for element in twiml if element.tag == "Say"]


async def page(
    live: TestClient,
    account: Account,
    settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    bodies: list[bytes],
) -> list[Page]:
    """POST each body to one webhook with all four channels, run the worker, return the pages in order."""
    webhook = await create(live, account, WEBHOOK)
    for body in bodies:
        resp = await live.post(path_of(webhook), data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 202, await resp.text()
        await run_worker(settings)  # one at a time, so the pages come back in the order sent
    by_kind = {
        kind: [r for r in fake_providers.requests if r.kind == kind] for kind in ("sms", "call", "push")
    }
    assert len(smtp_server.messages) == len(bodies)
    return [
        Page(smtp_server.messages[i], by_kind["sms"][i], by_kind["call"][i], by_kind["push"][i])
        for i in range(len(bodies))
    ]


async def test_two_clusters_give_pages_that_differ_by_cluster(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    bodies = [
        payload("alertmanager_crashlooping_prod-eu.json"),
        payload("alertmanager_crashlooping_staging-eu.json"),
    ]
    prod, staging = await page(live, account, provider_settings, fake_providers, smtp_server, bodies)

    labels = "cluster={} namespace=payments job=kube-state-metrics container=checkout"
    for sent, cluster, number in ((prod, "prod-eu", 1), (staging, "staging-eu", 2)):
        sms = sent.sms.form["Body"]
        head = f"[CRITICAL] #{number} [FIRING:2] KubePodCrashLooping"  # two groups: two incidents
        assert sms.splitlines() == [head, labels.format(cluster)]
        assert fits_one_segment(sms)
        assert sent.text.splitlines()[2] == labels.format(cluster)
        assert sent.push.body.splitlines()[0] == labels.format(cluster)
        # each alert's summary and description, under the labels
        assert "- Pod payments/checkout-7d9f-2 is crash looping" in sent.text
        assert f"(reason: CrashLoopBackOff) on {cluster}." in sent.push.body
        # common noise is left out: who scraped, the severity (said already), the title's alertname
        assert "prometheus=" not in sent.text and "severity=" not in sent.text
        assert "alertname=" not in sent.text
    assert prod.sms.form["Body"] != staging.sms.form["Body"]


async def test_a_truncated_group_counts_every_alert(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    """1,000 alerts through ``max_alerts: 50``: Alertmanager sends 50 and truncatedAlerts 950."""
    body = payload("alertmanager_targetdown_capped.json")
    assert (len(json.loads(body)["alerts"]), json.loads(body)["truncatedAlerts"]) == (50, 950)
    [sent] = await page(live, account, provider_settings, fake_providers, smtp_server, [body])

    assert sent.email["Subject"] == "[WARNING] #1 [FIRING:1000] Target is down"
    lines = sent.text.splitlines()
    assert lines[2:5] == [
        "cluster=prod-eu job=node-exporter alertname=TargetDown",
        "50 shown of 1,000",
        "- Target is down (node-0000.prod-eu.example.net:9100)",
    ]
    assert "... and 980 more" in lines  # 20 listed of the 1,000
    # the instance is the source, not the Alertmanager host
    assert "Source: node-0000.prod-eu.example.net:9100 and 999 more" in lines
    assert "alertmanager.example.net" not in sent.text
    assert "50 shown of 1,000" in sent.push.body and "50 shown of 1,000" in sent.html
    sms = sent.sms.form["Body"]
    assert sms.startswith("[WARNING] #1 [FIRING:1000] Target is down\ncluster=prod-eu") and fits_one_segment(
        sms
    )
    assert sent.said[1] == "Severity warning. Firing, 1000 alerts: Target is down."


async def test_a_whole_1000_alert_group_is_accepted_and_paged(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    """543 KB from a real Alertmanager without max_alerts: a 413 before the 1 MiB default."""
    body = payload("alertmanager_targetdown_full.json.gz")
    assert 512 * 1024 < len(body) < provider_settings.inbound_body_limit
    [sent] = await page(live, account, provider_settings, fake_providers, smtp_server, [body])
    assert sent.email["Subject"] == "[WARNING] #1 [FIRING:1000] Target is down"
    assert "shown of" not in sent.text  # nothing was left out
    assert "... and 980 more" in sent.text.splitlines()


async def test_a_pagerduty_page_carries_its_links(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    event = json.loads(payload("pagerduty_trigger.json"))
    event["links"] = [
        {"href": "https://backups.example.org/jobs/nightly/8812", "text": "Job run"},
        {"href": "https://ops:s3cret@wiki.example.org/runbooks/backup?x=<b>", "text": "Runbook <b>"},
        {"href": "javascript:alert(1)", "text": "not a link"},
    ]
    [sent] = await page(
        live, account, provider_settings, fake_providers, smtp_server, [json.dumps(event).encode()]
    )

    first, second = (
        "https://backups.example.org/jobs/nightly/8812",
        "https://wiki.example.org/runbooks/backup?x=<b>",
    )
    assert f"- Job run: {first}" in sent.text.splitlines()
    assert f"- Runbook <b>: {second}" in sent.text.splitlines()
    assert f'<a href="{first}">{first}</a>' in sent.html
    assert "https://wiki.example.org/runbooks/backup?x=&lt;b&gt;" in sent.html and "<b>" not in sent.html
    assert f"- Job run: {first}" in sent.push.body and sent.push.headers["Click"] == first
    assert sent.sms.form["Body"].splitlines()[:2] == ["[ERROR] #1 Nightly backup of billing-db failed", first]
    assert fits_one_segment(sent.sms.form["Body"])
    everything = sent.text + sent.html + sent.push.body + sent.sms.form["Body"] + sent.call.form["Twiml"]
    assert "s3cret" not in everything and "javascript:" not in everything
    assert sent.said == [
        "Monoduty alert from Production Alerts.",
        "Severity error. Nightly backup of billing-db failed.",
    ]


async def test_every_page_names_its_incident_number(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    pool: asyncpg.Pool,
) -> None:
    """``#n`` is what a person quotes back (SMS replies, the dashboard): SMS, email subject and push
    title all carry it, before the title so that nothing cuts it off."""
    long_title = "Replication lag on " + " ".join(f"db-{n}" for n in range(30))  # 188 characters
    bodies = [
        json.dumps({"title": "DB down", "message": "primary unreachable", "severity": "critical"}).encode(),
        json.dumps({"title": "Disk full", "severity": "warning"}).encode(),
        json.dumps({"title": long_title, "message": "lag 30s", "severity": "info"}).encode(),
    ]
    one, two, three = await page(live, account, provider_settings, fake_providers, smtp_server, bodies)

    assert one.sms.form["Body"] == "[CRITICAL] #1 DB down\nprimary unreachable"
    assert fits_one_segment(one.sms.form["Body"])
    assert one.email["Subject"] == one.push.headers["Title"] == "[CRITICAL] #1 DB down"
    assert "Incident: #1" in one.text.splitlines()
    assert two.sms.form["Body"] == "[WARNING] #2 Disk full"
    assert two.email["Subject"] == two.push.headers["Title"] == "[WARNING] #2 Disk full"
    # A subject longer than one segment goes whole, number included, without the detail.
    assert not fits_one_segment(f"[INFO] #3 {long_title}")
    assert three.sms.form["Body"] == f"[INFO] #3 {long_title}"
    numbers = await pool.fetch(
        "SELECT number, title FROM incidents WHERE user_id = $1 ORDER BY number", account.user.id
    )
    assert [(r["number"], r["title"]) for r in numbers] == [(1, "DB down"), (2, "Disk full"), (3, long_title)]
