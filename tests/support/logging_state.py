"""Undo what engine.observability.logs.configure does to the process, for tests that call it in-process: the
root handler and level, the library loggers it takes over, and Python's three hooks for
exceptions it would print itself (which pytest has its own in, for the whole session)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from engine.observability.logs import LIBRARY_LOGGERS


@contextmanager
def kept_logging() -> Iterator[None]:
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in (*LIBRARY_LOGGERS, "aiohttp.access")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in (root, *loggers)]
    hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
