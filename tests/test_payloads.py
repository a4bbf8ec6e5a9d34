"""Whatever a sender POSTs becomes one alert: every format, and nothing rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.alerts.payloads import (
    MAX_DETAILS_CHARS,
    MAX_MESSAGE,
    MAX_TITLE,
    ParsedAlert,
    normalise_severity,
    parse_alert,
)
from engine.channels.base import SEVERITIES

DATA = Path(__file__).parent / "data" / "payloads"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def fixture(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def as_json(value: object) -> bytes:
    return json.dumps(value).encode()


# (sample, content type, the fields the alert must have)
FORMATS: list[tuple[str, bytes, str | None, dict[str, Any]]] = [
    (
        "generic",
        as_json({"title": "DB down", "message": "primary unreachable", "severity": "critical"}),
        JSON,
        {"title": "DB down", "message": "primary unreachable", "severity": "critical", "format": "generic"},
    ),
    (
        "generic, other spellings",
        as_json({"summary": "Queue backlog", "text": "12k jobs", "level": "WARN", "source": "worker-7"}),
        JSON,
        {"title": "Queue backlog", "message": "12k jobs", "severity": "warning", "source": "worker-7"},
    ),
    (
        "generic, description and subject",
        as_json({"subject": "Cert expires", "description": "in 3 days", "priority": "P3"}),
        "application/json; charset=utf-8",
        {"title": "Cert expires", "message": "in 3 days", "severity": "warning", "format": "generic"},
    ),
    (
        "generic, message only: its first line is the title",
        as_json({"text": "Deploy failed\nstep 3 of 5: migrations"}),
        JSON,
        {"title": "Deploy failed", "message": "step 3 of 5: migrations", "severity": "error"},
    ),
    (
        "generic, dedup key and resolved status",
        as_json({"title": "Disk full", "status": "resolved", "dedup_key": "disk-db1", "team": "ops"}),
        JSON,
        {"resolved": True, "severity": "info", "fingerprint": "disk-db1", "details": {"team": "ops"}},
    ),
    (
        "alertmanager, three firing",
        fixture("alertmanager_firing"),
        JSON,
        {
            "title": "[FIRING:3] HighLatency",
            "severity": "critical",  # the loudest of the alerts' labels
            "source": "checkout-1:8080 and 2 more",  # the instances, not the Alertmanager host
            "format": "alertmanager",
            "fingerprint": '{}/{team="payments"}:{alertname="HighLatency"}',
            "resolved": False,
        },
    ),
    (
        "alertmanager, resolved",
        fixture("alertmanager_resolved"),
        JSON,
        {"title": "[RESOLVED] db-1 is down", "severity": "info", "resolved": True, "format": "alertmanager"},
    ),
    (
        "grafana, firing",
        fixture("grafana_firing"),
        JSON,
        {
            "title": "[FIRING:1] Disk almost full Infra (db-2 /var/lib/postgresql critical)",
            "severity": "critical",
            "source": "db-2",  # the alert's instance, not the Grafana host
            "format": "grafana",
            "resolved": False,
        },
    ),
    (
        "grafana, resolved",
        fixture("grafana_resolved"),
        JSON,
        {"title": "[RESOLVED] Disk almost full (db-2 critical)", "severity": "info", "resolved": True},
    ),
    (
        "grafana, legacy alerting",
        fixture("grafana_legacy"),
        JSON,
        {
            "title": "[Alerting] Search error rate",
            "message": "Search is throwing errors; check the indexer.",
            "severity": "error",
            "source": "grafana.example.net",
            "fingerprint": "grafana-rule-7",
            "format": "grafana",
        },
    ),
    (
        "pagerduty, trigger",
        fixture("pagerduty_trigger"),
        JSON,
        {
            "title": "Nightly backup of billing-db failed",
            "severity": "error",
            "source": "backup-runner-03.example.org",
            "fingerprint": "backup-nightly-2024-05-02",
            "format": "pagerduty",
            "resolved": False,
        },
    ),
    (
        "pagerduty, resolve without payload",
        fixture("pagerduty_resolve"),
        JSON,
        {
            "title": "Resolved: backup-nightly-2024-05-02",
            "severity": "info",
            "resolved": True,
            "fingerprint": "backup-nightly-2024-05-02",
        },
    ),
    (
        "form",
        b"title=Backup+failed&message=exit+code+2&severity=high&host=nas-1&job=nightly",
        FORM,
        {
            "title": "Backup failed",
            "message": "exit code 2",
            "severity": "error",
            "source": "nas-1",
            "format": "form",
            "details": {"job": "nightly"},
        },
    ),
    (
        "curl -d with JSON is sent as a form, read as JSON",
        b'{"title": "From curl", "severity": "info"}',
        FORM,
        {"title": "From curl", "severity": "info", "format": "generic"},
    ),
    (
        "curl -d with a sentence is sent as a form, read as text",
        b"Disk full on db1",
        FORM,
        {"title": "Disk full on db1", "message": "", "format": "text"},
    ),
    (
        "multipart form (curl -F)",
        b'--b0undary\r\nContent-Disposition: form-data; name="title"\r\n\r\nCron job late\r\n'
        b'--b0undary\r\nContent-Disposition: form-data; name="severity"\r\n\r\nwarning\r\n--b0undary--\r\n',
        "multipart/form-data; boundary=b0undary",
        {"title": "Cron job late", "severity": "warning", "format": "form"},
    ),
    (
        "plain text",
        b"Backup failed on nas-1\n\nexit code 2\nsee /var/log/backup.log\n",
        "text/plain",
        {
            "title": "Backup failed on nas-1",
            "message": "exit code 2\nsee /var/log/backup.log",
            "severity": "error",
            "source": None,
            "format": "text",
        },
    ),
    (
        "no content type, text",
        b"  \n  Something broke  \n",
        None,
        {"title": "Something broke", "message": "", "format": "text"},
    ),
    (
        "no content type, JSON",
        as_json({"title": "Sniffed", "severity": "crit"}),
        None,
        {"title": "Sniffed", "severity": "critical", "format": "generic"},
    ),
    (
        "malformed JSON is kept as text",
        b'{"title": "DB down", "message": "oops"\n  trailing garbage',
        JSON,
        {
            "title": '{"title": "DB down", "message": "oops"',
            "message": "  trailing garbage",  # indentation is kept: it may be a log excerpt
            "format": "text",
            "severity": "error",
        },
    ),
    (
        "JSON, but a list",
        as_json([{"check": "ping"}, 2]),
        JSON,
        {"title": "Alert", "message": '[{"check":"ping"},2]', "format": "json", "severity": "error"},
    ),
    (
        "JSON object of no known shape",
        as_json({"event": "node_offline", "node": "edge-4", "since": 1714640000}),
        JSON,
        {"title": "node_offline", "message": '{"event":"node_offline","node":"edge-4","since":1714640000}'},
    ),
    (
        "JSON object with nothing to name it",
        as_json({"a": 1}),
        JSON,
        {"title": "Alert", "message": '{"a":1}', "format": "json", "details": {}},
    ),
    (
        "a bare JSON string",
        b'"Printer on fire\\nthird floor"',
        JSON,
        {"title": "Printer on fire", "message": "third floor", "format": "json"},
    ),
    ("empty body", b"", JSON, {"title": "Alert", "message": "", "format": "text", "severity": "error"}),
]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [case[1:] for case in FORMATS],
    ids=[case[0] for case in FORMATS],
)
def test_formats(body: bytes, content_type: str | None, expected: dict[str, Any]) -> None:
    alert = parse_alert(body, content_type)
    assert {key: getattr(alert, key) for key in expected} == expected
    assert_well_formed(alert)


def assert_well_formed(alert: ParsedAlert) -> None:
    """What every alert promises, whatever came in."""
    assert alert.title and len(alert.title) <= MAX_TITLE
    assert "\n" not in alert.title and alert.title == alert.title.strip()
    assert len(alert.message) <= MAX_MESSAGE
    assert alert.severity in SEVERITIES
    # Postgres refuses NUL and lone surrogates in text and jsonb.
    text = alert.title + alert.message + json.dumps(alert.details, ensure_ascii=False, allow_nan=False)
    assert "\x00" not in text
    text.encode("utf-8")
    assert len(json.dumps(alert.details, ensure_ascii=False)) <= MAX_DETAILS_CHARS


def test_alertmanager_message_lists_each_alert() -> None:
    alert = parse_alert(fixture("alertmanager_firing"), JSON)
    assert alert.message.splitlines() == [
        "job=checkout-api team=payments",  # the group's labels, without alertname (the title)
        "- p99 latency above 2s on checkout-1",
        "  p99 latency has been 2.7s for 10 minutes.",
        "- p99 latency above 5s on checkout-2",
        "  p99 latency has been 6.1s for 10 minutes.",
        "- HighLatency (checkout-3:8080)",  # no summary: its name and instance
        "Runbook: https://wiki.internal/runbooks/high-latency",
    ]


def test_alertmanager_single_firing_alert_has_no_count_and_mixed_groups_show_status() -> None:
    group = json.loads(fixture("alertmanager_firing"))
    group["alerts"][1]["status"] = "resolved"
    group["alerts"] = group["alerts"][:2]
    alert = parse_alert(as_json(group), JSON)
    assert alert.title == "HighLatency"
    assert alert.severity == "warning"  # the resolved alert's "critical" no longer counts
    assert "[FIRING] p99 latency above 2s on checkout-1" in alert.message
    assert "[RESOLVED] p99 latency above 5s on checkout-2" in alert.message


def test_alertmanager_without_severity_labels_is_loud() -> None:
    group = json.loads(fixture("alertmanager_firing"))
    for item in group["alerts"]:
        item["labels"].pop("severity")
    assert parse_alert(as_json(group), JSON).severity == "error"


def test_credentials_never_kept() -> None:
    """A URL's user:password and PagerDuty's routing key are secrets the sender should not have sent."""
    for name in ("alertmanager_firing", "pagerduty_trigger"):
        stored = repr(parse_alert(fixture(name), JSON))
        assert "hunter2" not in stored and "admin" not in stored
        assert "R0UT1NGK3Y" not in stored


def test_pagerduty_details_and_message() -> None:
    alert = parse_alert(fixture("pagerduty_trigger"), JSON)
    assert alert.details["custom_details"] == {
        "exit_code": 2,
        "stderr": "pg_dump: error: connection to server failed",
        "retries": 3,
    }
    assert alert.details["event_action"] == "trigger"
    assert "component: pg_dump" in alert.message
    assert "stderr: pg_dump: error: connection to server failed" in alert.message


def test_pagerduty_acknowledge_is_not_resolved_and_is_quiet() -> None:
    body = as_json({"routing_key": "k" * 32, "event_action": "acknowledge", "dedup_key": "disk-7"})
    alert = parse_alert(body, JSON)
    assert (alert.title, alert.resolved) == ("Acknowledged: disk-7", False)
    assert alert.severity == "error"  # no severity stated and not resolved: the default


def test_resolved_keeps_a_severity_stated_for_the_event() -> None:
    body = as_json({"title": "Failover done", "status": "resolved", "severity": "warning"})
    assert parse_alert(body, JSON).severity == "warning"


SEVERITY_WORDS = {
    "critical": ["critical", "CRIT", "Fatal", "emergency", "page", "P1", "sev-1", "alert"],
    "error": ["error", "ERR", "high", "major", "p2", "SEV_2"],
    "warning": ["warning", "Warn", "medium", "minor", "P3", " warning "],
    "info": ["info", "informational", "low", "ok", "resolved", "p4", "P5", "debug"],
}
SEVERITY_TABLE = [(word, severity) for severity, words in SEVERITY_WORDS.items() for word in words]


@pytest.mark.parametrize(("word", "severity"), SEVERITY_TABLE)
def test_severity_table(word: str, severity: str) -> None:
    assert normalise_severity(word) == severity
    assert parse_alert(as_json({"title": "t", "severity": word}), JSON).severity == severity


@pytest.mark.parametrize("word", ["", "purple", "5", 3, None, ["critical"]])
def test_unknown_severity_is_error(word: object) -> None:
    assert normalise_severity(word) is None
    assert parse_alert(as_json({"title": "t", "severity": word}), JSON).severity == "error"


def test_title_is_one_clean_line_of_at_most_200_characters() -> None:
    body = as_json({"title": "\x1b[31mRED\x1b[0m\tline one\r\nline two\u202e" + "x" * 500})
    alert = parse_alert(body, JSON)
    assert alert.title.startswith("[31mRED[0m line one line two")
    assert len(alert.title) == MAX_TITLE and alert.title.endswith("…")
    assert_well_formed(alert)


def test_message_is_capped() -> None:
    alert = parse_alert(as_json({"title": "t", "message": "y" * 50_000}), JSON)
    assert len(alert.message) == MAX_MESSAGE and alert.message.endswith("…")


def test_non_utf8_bytes_are_replaced() -> None:
    alert = parse_alert(b"Caf\xe9 \xff down\nd\xe9tails", "text/plain; charset=latin-1")
    assert alert.title == "Caf\ufffd \ufffd down"
    assert alert.message == "d\ufffdtails"


def test_non_utf8_inside_json_still_parses() -> None:
    alert = parse_alert(b'{"title": "Caf\xe9", "severity": "info"}', JSON)
    assert (alert.title, alert.format, alert.severity) == ("Caf\ufffd", "generic", "info")


def test_utf8_bom_is_ignored() -> None:
    alert = parse_alert(b"\xef\xbb\xbf" + as_json({"title": "BOM"}), JSON)
    assert (alert.title, alert.format) == ("BOM", "generic")


@pytest.mark.parametrize(
    "body",
    [
        b'{"title": "nul\\u0000here", "message": "lone \\ud800 surrogate", "extra": "\\u0000"}',
        b"[" * 100_000,  # deeper than the JSON parser goes
        b'{"title": "big", "n": 1e999, "m": NaN, "k": Infinity}',
        b"\x00\x00binary\x00",
    ],
    ids=["nul-and-surrogate", "deep-nesting", "non-finite-numbers", "binary"],
)
def test_hostile_bodies_give_storable_alerts(body: bytes) -> None:
    assert_well_formed(parse_alert(body, JSON))


def test_details_are_capped() -> None:
    wide = {f"field{i}": "v" * 900 for i in range(40)}
    alert = parse_alert(as_json({"title": "t", **wide}), JSON)
    assert 0 < len(alert.details) < 40
    assert_well_formed(alert)


def test_details_are_clipped_in_depth() -> None:
    deep: dict[str, Any] = {"leaf": "x"}
    for _ in range(10):
        deep = {"d": deep}
    alert = parse_alert(as_json({"title": "t", "deep": deep}), JSON)
    assert isinstance(alert.details["deep"]["d"]["d"]["d"]["d"], str)  # the rest, as JSON text


def test_long_fingerprint_is_hashed_not_cut() -> None:
    first = parse_alert(as_json({"title": "t", "fingerprint": "k" * 300 + "1"}), JSON)
    second = parse_alert(as_json({"title": "t", "fingerprint": "k" * 300 + "2"}), JSON)
    assert first.fingerprint and first.fingerprint.startswith("sha256:")
    assert first.fingerprint != second.fingerprint


def test_alertmanager_label_line_leaves_out_noise() -> None:
    group = json.loads(fixture("alertmanager_firing"))
    group["groupLabels"] = {"alertname": "HighLatency", "service": "checkout-api", "cluster": "prod"}
    group["commonLabels"] |= {"service": "checkout-api", "cluster": "prod", "prometheus": "monitoring/k8s"}
    alert = parse_alert(as_json(group), JSON)
    # where first (cluster), then what (service; job repeats its value); alertname is the title
    assert alert.message.splitlines()[0] == "cluster=prod service=checkout-api team=payments"
    group["commonAnnotations"]["summary"] = "Checkout is slow"
    # a summary is the title now: alertname says something again
    assert "alertname=HighLatency" in parse_alert(as_json(group), JSON).message.splitlines()[0].split()


def test_alertmanager_truncated_alerts_are_counted() -> None:
    alert = parse_alert(fixture("alertmanager_targetdown_capped"), JSON)
    assert alert.title == "[FIRING:1000] Target is down"
    assert alert.message.splitlines()[1] == "50 shown of 1,000"
    assert alert.source == "node-0000.prod-eu.example.net:9100 and 999 more"
    assert alert.details["truncated_alerts"] == 950


def test_pagerduty_links_are_kept_as_safe_urls() -> None:
    event = json.loads(fixture("pagerduty_trigger"))
    event["links"] = [
        {"href": "https://u:pw@grafana.example.org/d/1", "text": "Dashboard"},
        {"href": "ftp://files.example.org/x"},
        {"href": "https://status.example.org"},
        "not a link",
    ]
    alert = parse_alert(as_json(event), JSON)
    assert alert.details["links"] == [
        {"href": "https://grafana.example.org/d/1", "text": "Dashboard"},
        {"href": "https://status.example.org", "text": "https://status.example.org"},
    ]
    assert alert.message.splitlines()[-3:] == [
        "Links:",
        "- Dashboard: https://grafana.example.org/d/1",
        "- https://status.example.org",
    ]
