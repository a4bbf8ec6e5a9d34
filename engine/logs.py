"""Log set-up: readable text by default, one JSON object per line with MONODUTY_LOG_FORMAT=json.

Context travels as ``extra=`` fields (alert_id, webhook_id, delivery_id, channel, attempt,
outcome, latency_ms, request_id, and ``target`` masked by engine.masking); both formats print
the ones a record carries.

Every line, ours and the libraries' (aiohttp, arq, asyncpg, redis: they all reach the root
handler set up here), passes through ``engine.masking.mask_text`` once formatted: message,
traceback and context fields alike. A library may quote what a client sent (aiohttp's parser
errors repeat the raw request line or header, an API key or webhook token in it).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from engine.masking import mask_text

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


# Libraries whose records must reach our handler (and its redaction) rather than one of their own.
LIBRARY_LOGGERS = ("aiohttp", "arq", "asyncpg", "redis", "asyncio")


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: mask_text(value) if isinstance(value, str) else value
        for name in CONTEXT_FIELDS
        if (value := getattr(record, name, None)) is not None
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
            **_context(record),
        }
        if record.exc_info:
            data["exception"] = mask_text(self.formatException(record.exc_info))
        if record.stack_info:
            data["stack"] = mask_text(self.formatStack(record.stack_info))
        return json.dumps(data, default=str, ensure_ascii=False)  # masked targets read +1415•••0123


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # The whole line, traceback included (the base class appends it).
        line = mask_text(super().format(record))
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
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    # aiohttp's access log repeats the raw path, which for inbound alerts holds the secret token;
    # api.observability logs each request by its route pattern instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
