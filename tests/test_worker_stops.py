"""A worker told to stop stops: no Redis call swallows the cancel, and SIGTERM ends the process in
its grace plus a few seconds, whether Redis answers, is frozen or is gone."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix, in_progress_key_prefix

from engine import queue
from engine.observability import periodic
from engine.settings import Settings
from tests.support.faults import RedisServer, TcpProxy, WorkerProcess
from tests.support.processes import wait_until
from tests.support.services import Services

GRACE = 3
# SIGTERM to exit: the grace, then the Redis steps of shutdown (bounded at 3 s), plus a margin for
# a loaded machine. Before: never, while Redis was frozen or some cancels were lost.
EXIT_DEADLINE = GRACE + 12


async def test_a_task_cancelled_amid_redis_commands_ends(redis: ArqRedis) -> None:
    # Cancel a task issuing commands at every point of a command's round trip, loop turn by loop
    # turn. redis-py bounded its send with asyncio.wait_for, which on Python 3.11 drops a cancel
    # that lands as the send completes: about half these tasks went on forever.
    lost = []
    for turns in range(60):

        async def commands() -> None:
            while True:
                await redis.exists("x")

        task = asyncio.create_task(commands())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        if not done:
            lost.append(turns)
            while not task.done():  # do not leave it running into the next test
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
    assert lost == []


async def test_periodic_stop_keeps_a_cancel_of_its_caller() -> None:
    async def step() -> None:
        await asyncio.sleep(0)

    async def stopping(loop_task: asyncio.Task[None]) -> str:
        await periodic.stop(loop_task)
        return "went on after its cancel"

    async def hold_on_cancel() -> None:
        # A loop that takes a moment to end, as one finishing a Redis call does.
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)

    loop_task = asyncio.create_task(hold_on_cancel())
    await asyncio.sleep(0)
    caller = asyncio.create_task(stopping(loop_task))
    await asyncio.sleep(0.01)  # the caller is inside stop(), waiting for the loop to end
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert loop_task.done()

    # stop() on its own still ends the loop quietly.
    running = periodic.start(0.01, step, what="step", log=logging.getLogger("test"))
    await periodic.stop(running)
    assert running.cancelled()


def sigterm_and_time(worker: WorkerProcess) -> float:
    """SIGTERM the worker; the seconds until it exited (failing past EXIT_DEADLINE)."""
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    wait_exit(worker)
    return time.monotonic() - started


def wait_exit(worker: WorkerProcess) -> None:
    try:
        worker.proc.wait(timeout=EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running {EXIT_DEADLINE} s after SIGTERM:\n{worker.output()[-3000:]}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["frozen", "killed"])
async def test_sigterm_ends_the_worker_in_its_grace_while_redis_is_down(
    services: Services, tmp_path: Path, fault: str
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    worker = WorkerProcess(
        tmp_path / "worker.log",
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=server.url,
        MONODUTY_SHUTDOWN_GRACE=str(GRACE),
    )
    assert server.proc is not None
    try:
        await wait_until(lambda: "Starting worker" in worker.output(), "the worker to start", timeout=30)
        if fault == "frozen":
            os.kill(server.proc.pid, signal.SIGSTOP)
        else:
            server.kill()
        sigterm_and_time(worker)
        assert worker.proc.returncode == 0, worker.output()[-3000:]
    finally:
        if worker.alive():
            worker.kill()
        if server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


async def hold_elsewhere(url: str, count: int) -> None:
    """Queue ``count`` jobs another worker holds: a worker re-checks each every poll, so its poll
    loop is inside a Redis command nearly all the time (where a cancel used to be lost)."""
    client = await queue.connect(url)
    try:
        for _ in range(count):
            job_id = str(uuid.uuid4())
            await queue.enqueue_delivery(client, job_id)
            await client.psetex(in_progress_key_prefix + job_id, 600_000, b"1")
    finally:
        await client.aclose()


@pytest.mark.timeout(120)
async def test_busy_workers_stop_on_sigterm(services: Services, tmp_path: Path) -> None:
    # No grace: arq cancels the poll loop at the signal, mid-command. Before the fix about one
    # worker in two polled on for good (so three all stopping by chance: one run in eight).
    server = RedisServer(tmp_path / "redis")
    server.start()
    workers: list[WorkerProcess] = []
    try:
        await hold_elsewhere(server.url, 50)
        for n in range(3):
            workers.append(
                WorkerProcess(
                    tmp_path / f"worker-{n}.log",
                    MONODUTY_DATABASE_URL=services.database_url,
                    MONODUTY_REDIS_URL=server.url,
                    MONODUTY_SHUTDOWN_GRACE="0",
                )
            )
        for worker in workers:
            await wait_until(
                lambda w=worker: "Starting worker" in w.output(), "a worker to start", timeout=30
            )
        for worker in workers:
            worker.proc.send_signal(signal.SIGTERM)
        for worker in workers:
            wait_exit(worker)  # one SIGTERM each: a second one would cancel the loop again
            assert worker.proc.returncode == 0, worker.output()[-3000:]
    finally:
        for worker in workers:
            if worker.alive():
                worker.kill()
        server.stop()


async def test_a_redis_lost_during_start_up_does_not_end_the_worker(
    services: Services, tmp_path: Path
) -> None:
    """The connection drops as the worker reads Redis's INFO at start-up (arq's main ended the
    process there): it says so, carries on, and reports itself healthy once Redis answers."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    proxy = TcpProxy("127.0.0.1", server.port)
    await proxy.start()
    proxy.cut_before = b"$4\r\nINFO\r\n"  # the INFO command, not the CLIENT SETINFO of a connect
    worker = WorkerProcess(
        tmp_path / "worker.log",
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=proxy.url(server.url),
    )
    redis = await queue.connect(server.url)
    try:
        await wait_until(
            lambda: "polling until it answers" in worker.output() or not worker.alive(),
            "the worker to meet the cut connection",
            timeout=30,
        )
        proxy.cut_before = None
        assert worker.alive(), worker.output()[-3000:]
        health_key = Settings().queue_name + health_check_key_suffix
        await wait_until(lambda: redis.exists(health_key), "the worker to record its health", timeout=30)
        assert worker.alive(), worker.output()[-3000:]
    finally:
        await redis.aclose()
        if worker.alive():
            worker.stop()
        await proxy.stop()
        server.stop()
