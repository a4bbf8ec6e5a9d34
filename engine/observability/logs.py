"""Log set-up: readable text by default, one JSON object per line with MONODUTY_LOG_FORMAT=json.

Context travels as ``extra=`` fields (alert_id, webhook_id, delivery_id, channel, attempt,
outcome, latency_ms, request_id, and ``target`` masked by engine.masking); both formats print
the ones a record carries.

Every line, ours and the libraries' (aiohttp, arq, asyncpg, redis: they all reach the root
handler set up here), passes through ``engine.masking.mask_text`` once formatted: message,
traceback and context fields alike. A library may quote what a client sent (aiohttp's parser
errors repeat the raw request line or header, an API key or webhook token in it).

Python also writes to stderr without logging: an uncaught exception (``sys.excepthook``, and
``threading.excepthook`` for a thread) and an exception it had to ignore ("Exception ignored
in", ``sys.unraisablehook``: a failing ``__del__``, a generator closed late). ``configure``
points all three at logging, so their tracebacks are redacted like every other line.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from types import TracebackType
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


# A record whose caller built every part from known-safe pieces (api.observability's access line:
# a method, a route pattern, a status, a time, a request id it masked itself) says so with
# ``extra={TRUSTED: True}`` and skips the redaction of the whole line, which cost more than
# everything else a request logs.
TRUSTED = "trusted"

# Libraries whose records must reach our handler (and its redaction) rather than one of their own.
LIBRARY_LOGGERS = ("aiohttp", "arq", "asyncpg", "redis", "asyncio")


# Context values come back line after line (a webhook's id, a channel, a masked target, an alert's
# id on each of its deliveries), and so do messages: each short one is masked once (mask_text is a
# pure function), where masking them all was most of a delivery line's cost.
_CACHED_CHARS = 200
_mask_cached = functools.lru_cache(maxsize=4096)(mask_text)


def _masked(text: str) -> str:
    return _mask_cached(text) if len(text) <= _CACHED_CHARS else mask_text(text)


def _trusted(record: logging.LogRecord) -> bool:
    return getattr(record, TRUSTED, False) is True


def _context(record: logging.LogRecord) -> dict[str, object]:
    if _trusted(record):
        return {name: value for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None}
    return {
        name: _masked(value) if isinstance(value, str) else value
        for name in CONTEXT_FIELDS
        if (value := getattr(record, name, None)) is not None
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage() if _trusted(record) else _masked(record.getMessage()),
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
        self._stamp = (-1, "")  # the last second written, as logging's formatTime writes it

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's own, its strftime made once per second rather than once per line."""
        second = int(record.created)
        if datefmt is not None or second < 0 or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return self.default_msec_format % (self._stamp[1], record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        # The whole line, traceback included (the base class appends it).
        line = super().format(record)
        if not _trusted(record):
            # The time leading it is digits and punctuation that no pattern of mask_text matches
            # or runs on from: the rest alone is masked, and is often a line masked before.
            stamp = record.asctime
            line = stamp + _masked(line[len(stamp) :])
        context = _context(record)
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


_uncaught = logging.getLogger("monoduty.uncaught")


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):  # Ctrl-C: Python's usual short message
        sys.__excepthook__(kind, error, traceback)
        return
    _uncaught.critical("uncaught exception, the process ends", exc_info=(kind, error, traceback))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if issubclass(args.exc_type, SystemExit):  # as Python's own hook: a thread may exit this way
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    _uncaught.error("uncaught exception in thread %s", name, exc_info=exc_info)


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    try:
        where = repr(unraisable.object) if unraisable.object is not None else ""
    except Exception:  # a repr that fails must not hide the error being reported
        where = f"<{type(unraisable.object).__name__} object>"
    message = unraisable.err_msg or "Exception ignored in"
    value = unraisable.exc_value or unraisable.exc_type()
    exc_info = (unraisable.exc_type, value, unraisable.exc_traceback)
    _uncaught.error("%s: %s", message, where, exc_info=exc_info)


def configure(fmt: str = "text", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in the chosen format, and what Python itself
    would print there (uncaught and ignored exceptions) through logging too."""
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
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable
