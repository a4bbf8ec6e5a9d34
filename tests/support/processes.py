"""Helpers for tests that run `python -m monoduty ...` as real processes, and that wait on conditions.

- ``ROOT``: the source tree the processes import (the worktree under test).
- ``monoduty_env(**extra)``: a clean environment for a monoduty process: none of this process's
  ``MONODUTY_*`` variables, the source tree on ``PYTHONPATH``, then ``extra``.
- ``monoduty(*args, env=...)``: run a command to completion; ``start_monoduty`` starts one in the
  background; ``monoduty_argv`` is the argv both use (for ``asyncio.create_subprocess_exec``).
- ``dies_with_us(sig)``: a ``preexec_fn`` for every child a test starts: the kernel sends it ``sig``
  when the test process dies, so no server or worker outlives a killed or crashed pytest.
- ``free_port()``: a local TCP port nothing listens on right now.
- ``ApiProcess``: one `monoduty api` on a free port, its logs in a file; ``DevProcess``: one
  `monoduty dev`, its output in a file.
- ``wait_for`` (sync) and ``wait_until`` (async): poll a condition until it is truthy or a deadline
  passes; both take ``(condition, what, timeout=...)`` and return the condition's value.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from monoduty.children import on_parent_death
from tests.support.services import Services

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
# Short: a condition that is met is seen at once; every caller's condition is cheap or slow by itself.
POLL_INTERVAL = 0.02


# The fault and load tests count one page per alert they send, many distinct alerts a minute: with
# the noise caps on, most of those pages would wait for a digest. tests/test_noise_caps.py tests them.
UNCAPPED = {"MONODUTY_STORM_THRESHOLD": "1000000", "MONODUTY_MAX_OPEN_INCIDENTS": "1000000"}


def dies_with_us(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets ``sig`` when the thread that started it exits. The tests
    start children from the main thread or from an event loop's executor (``asyncio.to_thread``),
    whose threads live until the loop closes, after the test stopped its children; so any thread."""
    return on_parent_death(sig, any_thread=True)


def monoduty_env(**extra: str) -> dict[str, str]:
    """This environment minus its MONODUTY_* settings, the source tree importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONODUTY_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def monoduty_argv(*args: str) -> list[str]:
    """The argv of `monoduty ARGS` run from the source tree with this interpreter."""
    return [sys.executable, "-m", "monoduty", *args]


def monoduty(
    *args: str, env: dict[str, str], check: bool = True, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `monoduty ARGS` to completion; stdout and stderr captured as text.

    ``stdin`` is what the command reads; by default an empty, closed input (never a terminal).
    With ``check`` a non-zero exit raises ``CalledProcessError``.
    """
    return subprocess.run(
        monoduty_argv(*args),
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def start_monoduty(*args: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `monoduty ARGS` in the background; stdout and stderr go to ``log``, or nowhere without one."""
    argv = monoduty_argv(*args)
    if log is None:
        out = subprocess.DEVNULL
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=out, preexec_fn=dies_with_us())
    with log.open("w") as file:
        return subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=file, stderr=subprocess.STDOUT, preexec_fn=dies_with_us()
        )


def free_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


async def wait_until(condition: Callable[[], Awaitable[T] | T], what: str, timeout: float = 15.0) -> T:
    """``wait_for`` without blocking the event loop; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


class ApiProcess:
    """One `python -m monoduty api` on a free port; its stderr (the logs) goes to a file."""

    def __init__(self, services: Services, log: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.log = log
        scheme = "https" if "--tls-cert" in args else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        environment = monoduty_env(
            MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=services.redis_url, **env
        )
        self.proc = start_monoduty(
            "api", "--host", "127.0.0.1", "--port", str(self.port), *args, env=environment, log=log
        )
        wait_for(self._listening, "monoduty api to listen", timeout=60)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"monoduty api exited: {self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


class DevProcess:
    """One `python -m monoduty dev` on a free port, its data under ``data_dir``, its output in a file
    beside it; ready once it says it is running."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"dev-{self.port}.log"
        self.env = env
        self.data_dir = data_dir
        self.proc = start_monoduty(
            "dev", "--port", str(self.port), "--data-dir", str(data_dir), env=env, log=self.log
        )
        wait_for(
            lambda: "is running" in self.output() or self.proc.poll() is not None, "monoduty dev", timeout=120
        )
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)
