"""The background flush loops: a failing round is logged by type and the loop carries on."""

from __future__ import annotations

import logging

import pytest

from engine.observability import periodic
from tests.support.processes import wait_until

log = logging.getLogger("monoduty.test")


async def test_a_failing_round_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ConnectionError("redis://:hunter2@10.0.0.5 refused")  # a message that names secrets

    with caplog.at_level(logging.WARNING, logger="monoduty.test"):
        task = periodic.start(0.01, step, what="test flush", log=log)
        await wait_until(lambda: len(rounds) >= 3, "three rounds")
        await periodic.stop(task)
    assert task.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["test flush failed: ConnectionError"]
