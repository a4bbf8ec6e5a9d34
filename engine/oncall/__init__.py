"""On-call schedules: who is on call when, computed in plain code from a schedule's definition.

    model       the definition (Schedule, Rotation, ActiveHours, Override) and its results (Shift)
    validation  checks of a definition, each failure a ValidationError naming its field path
    localtime   local wall time to instants, with the DST rule (gap: after it; repeat: first)
    rotations   one rotation's handoffs, its shift at an instant, its active-hours windows
    schedules   layers and overrides: ``on_call(schedule, at)`` and ``shifts(schedule, start, end)``
    ical        the computed shifts as an RFC 5545 calendar feed

Nothing above touches the database or the clock: callers pass the schedule and the instants.
These do, around it:

    store        the schedule's rows as a definition; ``on_call_now`` (the escalation engine's)
    definitions  request inputs parsed into the definition
    crud         schedules by their team's members (the role checks)
    overrides    a schedule's overrides (a responder's own, an admin's for anyone)
    answers      on-call and shifts with the people named
    feeds        the signed, rotatable calendar feed URLs and their calendars
    quiet_hours  a person's nightly hours: pages below their chosen severity wait for the end
"""
