"""The inbound formats Monoduty recognises, one small function each.

Each function reads one decoded body and returns a ``Draft``: the raw pieces of an alert as the
sender gave them. Nothing here cleans, caps or maps severities; ``engine.alerts.payloads`` does that once
for every format, so a new format is one function here plus one line in ``recognise_json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Keys a generic JSON object or form may use, in order of preference.
TITLE_KEYS = ("title", "summary", "subject", "name")
MESSAGE_KEYS = ("message", "text", "description", "body")
SEVERITY_KEYS = ("severity", "level", "priority")
SOURCE_KEYS = ("source", "host", "hostname")
FINGERPRINT_KEYS = ("fingerprint", "dedup_key", "dedupKey", "group_key", "groupKey")
_GENERIC_KEYS = {*TITLE_KEYS, *MESSAGE_KEYS, *SEVERITY_KEYS, *SOURCE_KEYS, *FINGERPRINT_KEYS}
_GENERIC_KEYS |= {"status", "resolved"}
# Fields that may name an event in a JSON object of no known shape.
UNKNOWN_TITLE_KEYS = ("alertname", "alert", "event", "event_type", "check")
_RESOLVED_WORDS = {"resolved", "ok", "recovered"}
# Generic `status` / `action` words for the sender's action (Opsgenie's close included).
_ACTION_WORDS = {
    **dict.fromkeys(("resolved", "resolve", "ok", "recovered", "close", "closed"), "resolve"),
    **dict.fromkeys(("acknowledge", "acknowledged", "ack"), "acknowledge"),
}

_PD_ACTIONS = {"trigger": "Triggered", "acknowledge": "Acknowledged", "resolve": "Resolved"}
# Opsgenie webhook actions and what they do to the incident; any other (AddNote, ...) triggers.
_OPSGENIE_ACTIONS = {"Create": "trigger", "Acknowledge": "acknowledge", "Close": "resolve"}
OPSGENIE_TITLE = 130  # Opsgenie's limit on an alert's message, which is its title
MAX_LISTED_ALERTS = 20  # an Alertmanager group can hold hundreds; the message lists this many
# Labels that say nothing to the person paged: who scraped (every alert of one Prometheus has the
# same), and severity (the page states it already). alertname is left out when it is the title.
NOISE_LABELS = frozenset({"prometheus", "prometheus_replica", "receiver", "severity", "__name__"})
# Where a page's label line starts: where the problem is, then what it is.
LEADING_LABELS = ("cluster", "env", "environment", "region", "namespace", "service", "job", "instance")
MAX_LINKS = 5


@dataclass
class Draft:
    """One alert as the sender said it, before cleaning.

    ``severities`` holds every severity the payload states (raw values); the loudest one that maps
    wins. It stays empty for a resolved group whose only severity is the firing alerts' label: that
    label describes the problem, not the recovery.
    """

    format: str
    title: object = None
    message: object = None
    severities: list[object] = field(default_factory=list)
    source: object = None
    fingerprint: object = None
    resolved: bool = False
    details: dict[str, object] = field(default_factory=dict)
    # What the sender says happened to its problem (engine.incidents.SenderAction values); None
    # reads as "resolve" when ``resolved`` is set, else "trigger".
    action: str | None = None


def compact_json(value: object) -> str:
    """JSON on one line, non-ASCII kept readable."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _first(obj: Mapping[str, Any], keys: tuple[str, ...]) -> object:
    for key in keys:
        value = obj.get(key)
        if value not in (None, "", [], {}):
            return value
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def safe_url(value: object) -> str | None:
    """A URL without its user:password part: senders do put credentials in URLs."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_host(value: object) -> str | None:
    """``host[:port]`` of a URL, as the alert's source (short enough for an SMS)."""
    url = safe_url(value)
    return urlsplit(url).netloc if url else None


def _alerts(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = obj.get("alerts")
    return [a for a in raw if isinstance(a, Mapping)] if isinstance(raw, list) else []


def _alert_lines(alerts: list[Mapping[str, Any]], *, show_status: bool) -> str:
    """One entry per alert: its summary (or name and instance), then its description."""
    lines: list[str] = []
    for alert in alerts[:MAX_LISTED_ALERTS]:
        labels, annotations = _mapping(alert.get("labels")), _mapping(alert.get("annotations"))
        head = annotations.get("summary")
        instance = labels.get("instance")
        if not isinstance(head, str) or not head:
            head = str(labels.get("alertname") or "alert")
        # The instance, unless the summary names it already (with or without its port).
        if isinstance(instance, str) and instance and instance.rsplit(":", 1)[0] not in head:
            head = f"{head} ({instance})"
        status = str(alert.get("status") or "").upper()
        lines.append(f"[{status}] {head}" if show_status and status else f"- {head}")
        description = annotations.get("description")
        if isinstance(description, str) and description and description != head:
            lines.append(f"  {description}")
    return "\n".join(lines)


def label_line(group_labels: Mapping[str, Any], common_labels: Mapping[str, Any], title_name: object) -> str:
    """``cluster=prod namespace=payments job=api``: the group's labels a person needs to tell one
    page from another, group labels first. Left out: NOISE_LABELS, alertname when it is the title,
    and a label whose value is already shown (``service=api`` after ``job=api``)."""
    names = [*group_labels, *(n for n in common_labels if n not in group_labels)]
    leading = [n for n in LEADING_LABELS if n in names]
    labels = {**common_labels, **group_labels}
    shown: list[str] = []
    seen_values: set[str] = set()
    for name in [*leading, *(n for n in names if n not in leading)]:
        value = labels.get(name)
        if not isinstance(value, str) or not value or name in NOISE_LABELS:
            continue
        if (name == "alertname" and value == title_name) or value in seen_values:
            continue
        seen_values.add(value)
        shown.append(f"{name}={value}")
    return " ".join(shown)


def instance_source(
    common_labels: Mapping[str, Any], firing: list[Mapping[str, Any]], *, unseen: int = 0
) -> str | None:
    """The instance the group is about, as the page's source: the common one, else the first
    firing alert's (``node-1:9100 and 49 more``, counting ``unseen`` alerts Alertmanager left out);
    None when no alert names an instance."""
    common = common_labels.get("instance")
    if isinstance(common, str) and common:
        return common
    instances = list(
        dict.fromkeys(
            i for i in (_mapping(a.get("labels")).get("instance") for a in firing) if isinstance(i, str) and i
        )
    )
    if not instances:
        return None
    others = len(instances) - 1 + unseen
    return f"{instances[0]} and {_count(others)} more" if others else instances[0]


def page_links(raw: object) -> list[dict[str, str]]:
    """PagerDuty ``links`` (``[{href, text}]``) kept as http(s) URLs without credentials."""
    links: list[dict[str, str]] = []
    for item in raw if isinstance(raw, list) else []:
        url = safe_url(_mapping(item).get("href"))
        if url is None or urlsplit(url).scheme not in ("http", "https") or len(links) >= MAX_LINKS:
            continue
        text = _mapping(item).get("text")
        links.append({"href": url, "text": text if isinstance(text, str) and text else url})
    return links


def _count(number: int) -> str:
    return f"{number:,}"


def from_alertmanager(obj: Mapping[str, Any]) -> Draft:
    """Prometheus Alertmanager webhook (``version: "4"``): one notification per alert group."""
    alerts = _alerts(obj)
    common_labels = _mapping(obj.get("commonLabels"))
    group_labels = _mapping(obj.get("groupLabels"))
    annotations = _mapping(obj.get("commonAnnotations"))
    resolved = obj.get("status") == "resolved"
    firing = [a for a in alerts if a.get("status") != "resolved"]
    # max_alerts: Alertmanager sends the first N alerts and counts the rest in truncatedAlerts.
    # It does not say how many of those were firing; in a firing group they count as firing.
    truncated = obj.get("truncatedAlerts")
    truncated = (
        truncated if isinstance(truncated, int) and not isinstance(truncated, bool) and truncated > 0 else 0
    )
    total = len(alerts) + truncated
    firing_count = len(firing) + (truncated if not resolved else 0)
    first_labels = _mapping(alerts[0].get("labels")) if alerts else {}
    name = (
        annotations.get("summary")
        or common_labels.get("alertname")
        or group_labels.get("alertname")
        or first_labels.get("alertname")
        or "Alertmanager alert"
    )
    # Alertmanager's own subject style: a count only when it says something.
    if resolved:
        title = f"[RESOLVED] {name}"
    elif firing_count > 1:
        title = f"[FIRING:{firing_count}] {name}"
    else:
        title = str(name)
    severities: list[object] = []
    if not resolved:
        severities = [common_labels.get("severity")]
        severities += [_mapping(a.get("labels")).get("severity") for a in firing]
    statuses = {a.get("status") for a in alerts}
    lines = [label_line(group_labels, common_labels, name)]
    if truncated:
        lines.append(f"{_count(len(alerts))} shown of {_count(total)}")
    lines.append(_alert_lines(alerts, show_status=len(statuses) > 1))
    unlisted = total - min(len(alerts), MAX_LISTED_ALERTS)
    if unlisted > 0:
        lines.append(f"... and {_count(unlisted)} more")
    if isinstance(annotations.get("runbook_url"), str):
        lines.append(f"Runbook: {annotations['runbook_url']}")
    return Draft(
        format="alertmanager",
        title=title,
        message="\n".join(line for line in lines if line),
        severities=[s for s in severities if s is not None],
        source=instance_source(common_labels, firing or alerts, unseen=truncated)
        or url_host(obj.get("externalURL")),
        fingerprint=obj.get("groupKey"),
        resolved=resolved,
        details={
            "receiver": obj.get("receiver"),
            "status": obj.get("status"),
            "group_labels": dict(group_labels),
            "common_labels": dict(common_labels),
            "external_url": safe_url(obj.get("externalURL")),
            "alert_count": len(alerts),
            "firing_count": len(firing),
            "truncated_alerts": obj.get("truncatedAlerts"),
        },
    )


def from_grafana(obj: Mapping[str, Any]) -> Draft:
    """Grafana alerting webhook: unified alerting (Alertmanager-like) or the legacy rule shape."""
    draft = from_alertmanager(obj) if "alerts" in obj else Draft(format="grafana")
    draft.format = "grafana"
    # Grafana sends "state": "ok" with the legacy shape and "status": "resolved" with the unified one.
    draft.resolved = obj.get("status") == "resolved" or obj.get("state") == "ok"
    if draft.resolved:
        draft.severities = []
    # Grafana renders its own title and message from the user's templates: those win.
    draft.title = obj.get("title") or obj.get("ruleName") or draft.title
    draft.message = obj.get("message") or draft.message
    rule_url = safe_url(obj.get("ruleUrl"))
    instance = instance_source(_mapping(obj.get("commonLabels")), _alerts(obj))
    draft.source = instance or url_host(obj.get("externalURL")) or url_host(rule_url)
    if draft.fingerprint is None and obj.get("ruleId") is not None:
        draft.fingerprint = f"grafana-rule-{obj['ruleId']}"
    draft.details.update(
        {key: value for key, value in {"state": obj.get("state"), "rule_url": rule_url}.items() if value}
    )
    if not isinstance(obj.get("alerts"), list):
        draft.details.update(tags=obj.get("tags"), eval_matches=obj.get("evalMatches"))
    return draft


def member_drafts(value: object) -> list[Draft]:
    """Each alert of an Alertmanager or Grafana group notification as a draft of its own, keyed by
    its ``fingerprint`` and stating its own status (for ``dedupBy: "alert"``); [] for other bodies.

    Alertmanager sends the whole group each time, every alert with its own status: an alert that
    stopped firing is listed as resolved while the others fire on."""
    if not isinstance(value, Mapping) or not isinstance(value.get("alerts"), list):
        return []
    grafana = "orgId" in value
    if not grafana and "groupKey" not in value and "receiver" not in value:
        return []
    drafts = []
    for alert in _alerts(value):
        labels = _mapping(alert.get("labels"))
        fingerprint = alert.get("fingerprint") or "labels:" + compact_json(dict(sorted(labels.items())))
        alone = {
            "status": "resolved" if alert.get("status") == "resolved" else "firing",
            "alerts": [alert],
            "groupLabels": _mapping(value.get("groupLabels")),
            "commonLabels": labels,
            "commonAnnotations": _mapping(alert.get("annotations")),
            "externalURL": value.get("externalURL"),
            "receiver": value.get("receiver"),
            "groupKey": fingerprint,
        }
        draft = from_alertmanager(alone)
        draft.format = "grafana" if grafana else "alertmanager"
        drafts.append(draft)
    return drafts


def from_pagerduty(obj: Mapping[str, Any]) -> Draft:
    """PagerDuty Events API v2. The routing_key is a credential and is never kept."""
    action = str(obj.get("event_action") or "trigger").lower()
    payload = _mapping(obj.get("payload"))
    dedup_key = obj.get("dedup_key")
    # acknowledge and resolve events usually carry no payload: say what happened to which key.
    title = payload.get("summary") or f"{_PD_ACTIONS.get(action, action)}: {dedup_key or 'PagerDuty event'}"
    lines = [f"{key}: {payload[key]}" for key in ("component", "group", "class") if payload.get(key)]
    custom = payload.get("custom_details")
    if isinstance(custom, Mapping):
        lines += [f"{key}: {v if isinstance(v, str) else compact_json(v)}" for key, v in custom.items()]
    elif custom:
        lines.append(custom if isinstance(custom, str) else compact_json(custom))
    links = page_links(obj.get("links"))
    if links:
        # As URLs in the text, so every channel (and the outbox) shows where to look.
        lines += [
            "Links:",
            *(
                f"- {link['text']}: {link['href']}" if link["text"] != link["href"] else f"- {link['href']}"
                for link in links
            ),
        ]
    return Draft(
        format="pagerduty",
        title=title,
        message="\n".join(lines),
        severities=[payload["severity"]] if payload.get("severity") else [],
        source=payload.get("source"),
        fingerprint=dedup_key,
        resolved=action == "resolve",
        action=action if action in _PD_ACTIONS else "trigger",
        details={
            "event_action": action,
            "component": payload.get("component"),
            "group": payload.get("group"),
            "class": payload.get("class"),
            "timestamp": payload.get("timestamp"),
            "custom_details": custom,
            "client": obj.get("client"),
            "client_url": safe_url(obj.get("client_url")),
            "links": links,
        },
    )


def from_opsgenie(obj: Mapping[str, Any]) -> Draft:
    """Opsgenie's webhook shape (``{"action", "alert": {...}}``): what engine.alerts.opsgenie_api
    queues for the Alert API, and what Opsgenie itself sends to a webhook integration."""
    alert = _mapping(obj.get("alert"))
    action = _OPSGENIE_ACTIONS.get(str(obj.get("action")), "trigger")
    alias = alert.get("alias")
    text = alert.get("message")
    text = text if isinstance(text, str) and text.strip() else None
    done = {"resolve": "Closed", "acknowledge": "Acknowledged"}.get(action)
    title = text[:OPSGENIE_TITLE] if text else f"{done or 'Opsgenie alert'}: {alias or 'alert'}"
    lines = [text] if text and len(text) > OPSGENIE_TITLE else []
    if isinstance(alert.get("description"), str):
        lines.append(alert["description"])
    for name in ("entity", "note", "user"):
        if isinstance(alert.get(name), str) and alert[name]:
            lines.append(f"{name}: {alert[name]}")
    tags = alert.get("tags")
    if isinstance(tags, list) and tags:
        lines.append("tags: " + ", ".join(str(t) for t in tags))
    lines += [f"{key}: {value}" for key, value in _mapping(alert.get("details")).items()]
    return Draft(
        format="opsgenie",
        title=title,
        message="\n".join(line for line in lines if line),
        severities=[alert["priority"]] if action == "trigger" and alert.get("priority") else [],
        source=alert.get("source") or alert.get("entity"),
        fingerprint=alias,
        resolved=action == "resolve",
        action=action,
        details={
            "action": obj.get("action"),
            "priority": alert.get("priority"),
            "entity": alert.get("entity"),
            "tags": tags,
            "details": alert.get("details"),
            "responders": alert.get("responders"),
            "visible_to": alert.get("visibleTo"),
            "actions": alert.get("actions"),
            "user": alert.get("user"),
            "note": alert.get("note"),
        },
    )


def is_generic(obj: Mapping[str, Any]) -> bool:
    """Does the object name a title or a message under one of the generic keys?"""
    return any(obj.get(key) not in (None, "") for key in (*TITLE_KEYS, *MESSAGE_KEYS))


def from_generic(obj: Mapping[str, Any], *, format: str = "generic") -> Draft:
    """``{title, message, severity}`` and its common spellings; the other fields become details."""
    status = obj.get("status")
    resolved = obj.get("resolved") is True or (isinstance(status, str) and status.lower() in _RESOLVED_WORDS)
    severity = _first(obj, SEVERITY_KEYS)
    return Draft(
        action=generic_action(obj),
        format=format,
        title=_first(obj, TITLE_KEYS),
        message=_first(obj, MESSAGE_KEYS),
        severities=[severity] if severity is not None else [],
        source=_first(obj, SOURCE_KEYS),
        fingerprint=_first(obj, FINGERPRINT_KEYS),
        resolved=resolved,
        details={key: value for key, value in obj.items() if key not in _GENERIC_KEYS},
    )


def generic_action(obj: Mapping[str, Any]) -> str | None:
    """The action a generic body states in ``action`` or ``status`` (resolve, acknowledge), if any."""
    for key in ("action", "status"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip().lower() in _ACTION_WORDS:
            return _ACTION_WORDS[value.strip().lower()]
    return "resolve" if obj.get("resolved") is True else None


def from_unknown_json(value: object) -> Draft:
    """Valid JSON of no known shape: keep all of it, readable, as the message."""
    title = _first(value, UNKNOWN_TITLE_KEYS) if isinstance(value, Mapping) else None
    if not isinstance(title, str):
        title = "Alert"
    return Draft(format="json", title=title, message=compact_json(value))


def from_text(text: str) -> Draft:
    """Plain text (and malformed JSON): the message; the title is derived from its first line."""
    return Draft(format="text", message=text)


def recognise_json(value: object) -> Draft:
    """Pick the format of a parsed JSON body. Order matters: Grafana's unified payload is a superset
    of Alertmanager's, and PagerDuty events may carry a "summary" a generic check would take."""
    if isinstance(value, str):
        return Draft(format="json", message=value)  # a bare JSON string is a text alert
    if not isinstance(value, Mapping):
        return from_unknown_json(value)
    if "event_action" in value and ("routing_key" in value or isinstance(value.get("payload"), Mapping)):
        return from_pagerduty(value)
    if isinstance(value.get("alert"), Mapping) and "action" in value and "integrationName" in value:
        return from_opsgenie(value)
    if "orgId" in value and ("alerts" in value or "ruleUrl" in value or "evalMatches" in value):
        return from_grafana(value)
    if isinstance(value.get("alerts"), list) and ("groupKey" in value or "receiver" in value):
        return from_alertmanager(value)
    if is_generic(value):
        return from_generic(value)
    return from_unknown_json(value)
