"""Log set-up: readable text by default, one JSON object per line with MONODUTY_LOG_FORMAT=json.

Context travels as ``extra=`` fields (alert_id, webhook_id, delivery_id, channel, attempt,
outcome, latency_ms, request_id, and ``target`` masked by engine.masking); both formats print
the ones a record carries.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

CONTEXT_FIELDS = (
    "request_id",
    "alert_id",
    "webhook_id",
    "delivery_id",
    "channel",
    "target",
    "attempt",
    "outcome",
    "latency_ms",
    "method",
    "route",
    "status",
)


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)  # masked targets read +1415•••0123


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


def configure(fmt: str = "text", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats the raw path, which for inbound alerts holds the secret token;
    # api.observability logs each request by its route pattern instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
