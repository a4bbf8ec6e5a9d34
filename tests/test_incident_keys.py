"""The dedup key and the sender's action each format gives (pure parsing, no services)."""

from __future__ import annotations

import json

import pytest

from engine.alerts.payloads import parse_alert
from engine.incidents.keys import incident_key, sender_key

AM = {"receiver": "r", "status": "firing", "groupKey": '{}:{alertname="X"}', "alerts": [{"status": "firing"}]}
GRAFANA = {"orgId": 1, "status": "resolved", "groupKey": "g-1", "alerts": [{"status": "resolved"}]}


@pytest.mark.parametrize(
    ("body", "key", "action"),
    [
        ({"routing_key": "r", "event_action": "trigger", "dedup_key": "k", "payload": {}}, "k", "trigger"),
        ({"routing_key": "r", "event_action": "acknowledge", "dedup_key": "k"}, "k", "acknowledge"),
        ({"routing_key": "r", "event_action": "resolve", "dedup_key": "k"}, "k", "resolve"),
        (AM, '{}:{alertname="X"}', "trigger"),
        ({**AM, "status": "resolved"}, '{}:{alertname="X"}', "resolve"),
        (GRAFANA, "g-1", "resolve"),
        ({"orgId": 1, "ruleId": 7, "ruleUrl": "http://g/r", "state": "ok"}, "grafana-rule-7", "resolve"),
        ({"title": "t", "dedup_key": "a"}, "a", "trigger"),
        ({"title": "t", "dedupKey": "b", "status": "resolved"}, "b", "resolve"),
        ({"title": "t", "fingerprint": "c", "action": "acknowledge"}, "c", "acknowledge"),
        ({"title": "t", "fingerprint": "c", "status": "acknowledged"}, "c", "acknowledge"),
        ({"title": "t", "fingerprint": "c", "action": "close"}, "c", "resolve"),
        ({"title": "t", "status": "ok"}, None, "resolve"),
        ({"title": "t"}, None, "trigger"),
    ],
)
def test_each_format_gives_its_key_and_action(body: dict, key: str | None, action: str) -> None:
    parsed = parse_alert(json.dumps(body).encode(), "application/json")
    assert (parsed.dedup_key, parsed.action) == (key, action)


def test_without_a_key_the_title_and_source_are_the_key_unless_dedup_is_off() -> None:
    def key(body: dict, dedup_by: str = "group") -> str | None:
        return incident_key(parse_alert(json.dumps(body).encode(), "application/json"), dedup_by)

    assert key({"title": "DB down", "source": "db-1"}) == key({"title": "db down ", "source": "DB-1"})
    assert key({"title": "DB down", "source": "db-1"}) != key({"title": "DB down", "source": "db-2"})
    assert key({"title": "DB down", "dedup_key": "k"}) == "k"
    assert key({"title": "DB down", "dedup_key": "k"}, "none") is None


def test_the_inbound_answer_finds_the_key_without_parsing_the_body() -> None:
    assert sender_key(b'{"routing_key": "r", "dedup_key": "srv-1/disk", "payload": {}}') == "srv-1/disk"
    assert sender_key(b'{"dedupKey": "with \\"quote\\""}') == 'with "quote"'
    assert (
        sender_key(
            b'{"dedup_key": "' + b"x" * 300 + b'"}',
        )
        == parse_alert(b'{"title": "t", "dedup_key": "' + b"x" * 300 + b'"}', "application/json").dedup_key
    )  # a long key is stored as its digest, and echoed as stored
    assert sender_key(b"dedup_key=k") is None
    assert sender_key(b'{"title": "no key"}') is None
