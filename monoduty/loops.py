"""The event loop `monoduty api` and `monoduty worker` run on: uvloop where it is installed.

uvloop (libuv, the loop of Node.js) runs the socket work both processes are made of (HTTP in,
Redis and PostgreSQL out, HTTP to providers) in C; asyncio's own loop runs it in Python. It is a
dependency on every platform that has it (not Windows); elsewhere asyncio's loop serves.
bench/bare_endpoint.py runs the suite's baseline on the same loop (``NAME``).
"""

from __future__ import annotations

import asyncio

try:
    import uvloop
except ImportError:  # pragma: no cover - a platform without uvloop
    uvloop = None  # type: ignore[assignment]

NAME = "uvloop" if uvloop is not None else "asyncio"


def install() -> None:
    """Make every new event loop of this process a uvloop one (before aiohttp or arq makes one)."""
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
