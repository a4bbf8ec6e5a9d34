"""The processes the tests start die with the test process (tests/support/processes.py's
``dies_with_us``): a killed or crashed pytest leaves no worker polling a Redis db that a later run
reuses, and no server holding a port. Started from the main thread, or from an event loop's
executor as the fault tests start most of theirs (``asyncio.to_thread``)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from tests.support.processes import ROOT, monoduty_env, wait_for

# A test process in miniature: starts a child that would wait for ever, says its pid, and waits.
PARENT = """
import asyncio, signal, subprocess, sys
from tests.support.processes import dies_with_us

def start() -> int:
    argv = [sys.executable, "-c", "import signal; signal.pause()"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, preexec_fn=dies_with_us()).pid

async def main() -> None:
    pid = start() if sys.argv[1] == "main" else await asyncio.to_thread(start)
    print(pid, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie waits for init only
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("thread", ["main", "executor"])
def test_a_child_dies_when_the_test_process_that_started_it_is_killed(thread: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, thread],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=monoduty_env(),
        cwd=ROOT,
    )
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert running(child)
        parent.kill()
        parent.wait(timeout=30)
        wait_for(lambda: not running(child), "the child to die with its parent", timeout=15)
    finally:
        if child is not None and running(child):
            psutil.Process(child).kill()
        parent.kill()
        parent.communicate()
