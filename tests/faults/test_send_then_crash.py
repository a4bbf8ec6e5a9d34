"""Issue 17, scenario 2: the worker dies after the provider took a message and before the outcome
was recorded (tests/faults/send_crash.py says what it runs and judges).

- CI size (``-m slow``): one round of 30 alerts on four channels, every send held, one SIGKILL.
- Full size (``tests/faults/run``, or ``MONODUTY_FAULTS=full``): 8 rounds of 40 alerts (1,280 deliveries).

Each run writes its figures (``send-crash-ci`` or ``send-crash``, ``.json`` and ``.md``) to
``MONODUTY_FAULTS_OUT`` (the test's temporary folder by default) before asserting them.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from tests.faults.send_crash import KEY_HONOURED, CrashFigures, CrashSize, run_crash, write_artefact
from tests.support.factories import Account
from tests.support.providers import FakeProviders
from tests.support.services import Services

CI = CrashSize("CI size", alerts=30, rounds=1)
FULL = CrashSize("full", alerts=40, rounds=8)
FULL_WANTED = os.environ.get("MONODUTY_FAULTS") == "full"


def out_folder(tmp_path: Path) -> Path:
    return Path(os.environ.get("MONODUTY_FAULTS_OUT") or tmp_path / "faults")


def assert_sound(figures: CrashFigures) -> None:
    assert figures.problems == [], figures.problems[:20]
    assert figures.lost == 0
    assert figures.recovery_s is not None
    # Every send the kill left unrecorded was sent again (a page is not lost) ...
    assert figures.crashed_sends == len(KEY_HONOURED) * figures.accepted
    assert figures.duplicates["SMS"] == figures.duplicates["PUSH_NOTIF"] == figures.accepted
    # ... and none of those duplicates is silent: each delivery says possibly_duplicated, and each
    # incident's timeline says so.
    assert figures.flagged >= figures.crashed_sends
    assert figures.silent_duplicates == 0
    assert figures.timeline_missing == []
    # Where the provider honours the key Monoduty sends, the person or program sees it once.
    for channel, honoured in KEY_HONOURED.items():
        if honoured:
            assert figures.shown_twice[channel] == 0, (channel, figures.shown_twice)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_send_whose_outcome_was_lost_is_sent_again_and_recorded_as_possibly_duplicated(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures = await run_crash(CI, services, pool, account, fake_providers, tmp_path)
    print(write_artefact([figures], out_folder(tmp_path), "send-crash-ci").read_text())
    assert_sound(figures)


@pytest.mark.slow
@pytest.mark.skipif(not FULL_WANTED, reason="the full size runs with MONODUTY_FAULTS=full (tests/faults/run)")
@pytest.mark.timeout(1200)
async def test_the_full_send_then_crash_run(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures = await run_crash(FULL, services, pool, account, fake_providers, tmp_path)
    print(write_artefact([figures], out_folder(tmp_path), "send-crash").read_text())
    assert_sound(figures)
