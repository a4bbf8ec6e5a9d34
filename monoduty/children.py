"""Child processes that die with the process that started them (Linux ``PR_SET_PDEATHSIG``).

The kernel signals the child when the *thread* that forked it exits, not the process: a child
started from a short-lived thread would be signalled when that thread ends. ``on_parent_death``
therefore declines (returns None) off the main thread unless the caller says its threads live as
long as its children (``any_thread``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def on_parent_death(sig: int, *, any_thread: bool = False) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the kernel send ``sig`` to the child when we die (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    if not any_thread and threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def setup() -> None:  # runs after the child's uid switch, which would reset the setting
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # we died before the setting took: nobody would signal it
            os.kill(os.getpid(), sig)

    return setup
