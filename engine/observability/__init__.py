"""Seeing the service run: logs, metrics, response times, status, uptime, process presence and
the one periodic-flush helper."""
