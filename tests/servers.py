"""`monoduty api` as real processes, for tests that need more than one server or a TLS listener."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.processes import free_port, monoduty_env, start_monoduty, wait_for
from tests.services import Services


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
