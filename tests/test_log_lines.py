"""Log lines made cheaper read the same: logging's own time format, and every repeat of a line or
a context value redacted as the first one was."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from engine.observability import logs
from tests.support.logging_state import kept_logging

SECRET = "redis://default:hunter2-redis@127.0.0.1:6379/0"


@pytest.fixture
def log_to() -> Iterator[None]:
    with kept_logging():
        yield


def test_text_lines_carry_loggings_own_time_across_seconds() -> None:
    ours, plain = logs.TextFormatter(), logging.Formatter()
    base = 1_796_000_000.0  # any second; the lines below cross into the next ones
    for created in (base + 0.001, base + 0.999, base + 1.0, base + 1.5, base + 61.25, base + 0.5):
        record = logging.LogRecord("monoduty", logging.INFO, __file__, 1, "x", None, None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.formatTime(record) == plain.formatTime(record)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_repeated_line_is_redacted_every_time(log_to: None, log_format: str) -> None:
    stream = io.StringIO()
    logs.configure(log_format, "INFO", stream)
    log = logging.getLogger("monoduty.worker")
    for _ in range(3):
        log.warning("cannot reach %s", SECRET, extra={"target": SECRET, "channel": "EMAIL"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "hunter2" not in stream.getvalue()
    if log_format == "json":
        assert all(json.loads(line)["channel"] == "EMAIL" for line in lines)
    else:
        assert all(" channel=EMAIL " in line and "redis://default:" in line for line in lines)
