"""Incidents: one problem of one webhook, made of the alerts that share its dedup key.

    keys      the dedup key of an alert, per sender format and the webhook's ``dedupBy``
    attach    process_alert's step: join the open incident of the key, or open one (ON CONFLICT)
    noise     the caps: an overflow incident past MONODUTY_MAX_OPEN_INCIDENTS, pages held in a storm
    digests   the per-minute digest that pages a storm's held incidents at once
    events    the timeline rows
    actions   acknowledge, resolve and notes from people (the API)
    queries   the incident list and one incident with its alerts and timeline

Status ``triggered`` -> ``acknowledged`` -> ``resolved``. A key is unique per webhook only while its
incident is open (a unique partial index); after a resolve the same key opens a new incident.
Only opening an incident (or raising its severity) pages; acknowledging stops its pages at once.
"""

from __future__ import annotations

from enum import StrEnum


class IncidentStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Actor(StrEnum):
    """Who did something to an incident."""

    USER = "user"
    SENDER = "sender"
    SYSTEM = "system"


class EventKind(StrEnum):
    """One timeline entry."""

    OPENED = "opened"
    ALERT = "alert"
    SEVERITY_RAISED = "severity_raised"
    GROUP_CHANGED = "group_changed"  # an Alertmanager/Grafana group's alert list changed
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    NOTE = "note"
    PAGE_HELD = "page_held"  # a storm: the page waits for the webhook's digest
    DIGEST_SENT = "digest_sent"  # ... and went out in it
    PAGE_RELEASED = "page_released"  # its maintenance window ended: paged now, or (pageOnEnd off) not
    ESCALATED = "escalated"  # a step of its escalation policy ran: these users are paged
    REASSIGNED = "reassigned"  # a person gave it to someone else (paged at once)
    PAGE_SKIPPED = "page_skipped"  # someone or some rule could not be paged, and why
    ESCALATION_EXHAUSTED = "escalation_exhausted"  # the policy ran out of steps and repeats
    ESCALATION_STOPPED = "escalation_stopped"  # its policy was deleted meanwhile
    UNREACHED = "unreached"  # receipts: nobody the step paged could be reached, so it ends now
    POSSIBLY_DUPLICATED = "possibly_duplicated"  # a page sent again after its send's outcome was lost


class SenderAction(StrEnum):
    """What an inbound alert says about its problem (ParsedAlert.action)."""

    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class DedupBy(StrEnum):
    """A webhook's ``dedupBy``: how its alerts are grouped into incidents."""

    GROUP = "group"  # the sender's key (Alertmanager groupKey, PagerDuty dedup_key...), else content
    NONE = "none"  # every alert its own incident
    ALERT = "alert"  # Alertmanager/Grafana: each alert of a group (its fingerprint) its own incident


OPEN_STATUSES = (IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED)
