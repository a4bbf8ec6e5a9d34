"""`monoduty worker --check` as a supervisor or a container health check runs it."""

from __future__ import annotations

import signal

import pytest
import redis as redis_sync

from tests.support.processes import monoduty, monoduty_env, start_monoduty, wait_for
from tests.support.services import Services


def alive_workers(redis_url: str) -> int:
    client = redis_sync.Redis.from_url(redis_url)
    try:
        return int(client.zcard("monoduty:workers:seen"))  # the key the README tells operators to read
    finally:
        client.close()


@pytest.mark.slow  # over 5 s: run with the slow tests
def test_check_fails_without_a_worker_and_passes_while_one_runs(services: Services) -> None:
    env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=services.redis_url)
    client = redis_sync.Redis.from_url(services.redis_url)
    client.flushdb()
    client.close()
    assert monoduty("worker", "--check", env=env, check=False).returncode == 1

    workers = [start_monoduty("worker", env=env), start_monoduty("worker", env=env)]
    try:
        wait_for(
            lambda: any(p.poll() is not None for p in workers) or alive_workers(services.redis_url) == 2,
            "two workers to say they are alive",
            timeout=30,
        )
        assert all(p.poll() is None for p in workers)
        assert monoduty("worker", "--check", env=env, check=False).returncode == 0

        # One stops cleanly: it is no longer counted, and the shared health check still passes.
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(timeout=30) == 0
        assert alive_workers(services.redis_url) == 1
        assert monoduty("worker", "--check", env=env, check=False).returncode == 0
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    # The last one gone: nothing is counted and the check fails.
    assert alive_workers(services.redis_url) == 0
    assert monoduty("worker", "--check", env=env, check=False).returncode == 1


def test_check_with_redis_unreachable_is_unhealthy(services: Services) -> None:
    env = monoduty_env(
        MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL="redis://127.0.0.1:1/0"
    )
    result = monoduty("worker", "--check", env=env, check=False)
    assert result.returncode == 1 and "redis unreachable" in result.stderr
