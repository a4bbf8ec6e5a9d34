"""Alerts: accepting inbound calls, verifying signatures, parsing sender formats, the alert lifecycle."""
