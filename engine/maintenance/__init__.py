"""Maintenance windows: planned work on one webhook, or on every webhook of a team, during which
nobody is paged and nothing is lost.

    windows  the windows themselves: create, read, change, end early (team admins; viewers read)
    holds    inside ``record_alert``: the window a webhook is in now, and holding an incident's page
    ends     the worker's sweep: windows due to end release what they held (page it, or not)
    reminders  the same sweep: the team's inbox notice 10 minutes before a window ends
    silences matchers over an alert (Alertmanager's): what they match opens or joins an incident
             that does not page, until an alert of it comes after the silence

An alert inside a window is stored, counted and grouped into its incident as always; an incident
it opens (or would page again: a louder severity, a changed group) does not page and does not
start its escalation policy: it is *held* (``incidents.maintenance_window_id``, a ``page_held``
event in its timeline). When the window ends, its held incidents still triggered are paged then,
once (``pageOnEnd``, on by default): through the webhook's escalation policy if it has one, else on
its targetChannels. Acknowledged or resolved ones are not. Incidents opened before a window keep
escalating: someone has been paged for them already (PagerDuty does the same).
"""
