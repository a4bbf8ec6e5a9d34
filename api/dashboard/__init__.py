"""The web dashboard: server-rendered pages at ``/``, on the same origin and session as ``/api``.

    site       wiring: templates, routes, the live feed, the headers every answer carries
    guard      who is signed in (the API's session cookie), CSRF, the CSP, HTML error pages
    render     templates (Jinja2, autoescaped) and the context every page has; form helpers
    assets     the files under static/, served under content-hashed names, cached for a year
    views      what the templates show, made from what the engine answers
    sign_in    sign in and out, sign-up (MONODUTY_ALLOW_SIGNUP), the one-time login link
    incidents  the incident list (home) and one incident, with their actions
    webhooks   the webhook list, the create form, one webhook and its senders' configuration
    heartbeats a webhook page's heartbeats: status, ping URL, last pings; create, pause, resume
    maintenance  maintenance windows and silences: create, end or expire; what holds a page
    live       GET /events: Server-Sent Events of incident changes (engine.incidents.live)
    oncall     schedules: on call now, the timeline, overrides, new schedule, layers
    timeline   a schedule's shifts placed as lanes of bars (layers, overrides, final)
    policies   the escalation policy editor (steps, delays, targets, repeat)
    team       a team's members and roles: invite, change role, remove
    zones      the viewer's time zone; field_errors: an engine error at a form's field
    profile    contact methods and their verification, notification rules, calendar link,
               password, sessions, API keys
    inbox      the notifications, marked read one by one or all; the navigation's unread badge
    reports    pick and download a report; the calls and incidents per day chart (chart: SVG)
    status_page  components, response times and uptime, as /api/status and its siblings say
    outbox     under `monoduty dev` only: what would have been sent

Handlers call the engine as the JSON API's do (often the same functions of api/); templates
hold no rule. htmx (vendored, static/vendor/) swaps fragments; no script is inline.
"""
