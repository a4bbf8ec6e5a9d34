"""Issue 17, scenario 1: the worker SIGKILL storm (tests/faults/storm.py says what it runs and judges).

- CI size (``-m slow``): 200 alerts, providers at 50 ms, 5 kills.
- Full size (``tests/faults/run``, or ``MONODUTY_FAULTS=full``): 1,000 alerts with providers at
  50 ms and again at 500 ms, up to 24 kills each. Neither the default run nor ``-m slow`` runs it.

Each run writes its figures (``storm-ci`` or ``storm``, ``.json`` and ``.md``) to
``MONODUTY_FAULTS_OUT`` (the test's temporary folder by default) before asserting them, so a
failing run still reports what it found.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from tests.faults.storm import StormFigures, StormSize, run_storm, write_artefact
from tests.support.factories import Account
from tests.support.providers import FakeProviders
from tests.support.services import Services

CI = StormSize("CI size", alerts=200, provider_delay=0.05, rate=20, max_kills=5)
FULL = [
    StormSize("full, 50 ms providers", alerts=1000, provider_delay=0.05, rate=40, max_kills=24),
    StormSize("full, 500 ms providers", alerts=1000, provider_delay=0.5, rate=40, max_kills=24),
]
FULL_WANTED = os.environ.get("MONODUTY_FAULTS") == "full"


def out_folder(tmp_path: Path) -> Path:
    return Path(os.environ.get("MONODUTY_FAULTS_OUT") or tmp_path / "faults")


def assert_sound(figures: StormFigures) -> None:
    assert figures.kills >= 1, figures
    assert figures.accepted == figures.size["alerts"], figures.refused
    assert figures.lost_alerts == [], figures.lost_alerts[:20]
    assert figures.missing_rows == [], figures.missing_rows[:20]
    assert figures.counter_mismatches == []
    assert figures.worker_exits == [], figures.worker_exits
    assert figures.recovery_s is not None, "the backlog did not drain before the deadline"


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_worker_sigkill_storm_loses_nothing(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures = await run_storm(CI, services, pool, account, fake_providers, tmp_path)
    print(write_artefact([figures], out_folder(tmp_path), "storm-ci").read_text())
    assert_sound(figures)


@pytest.mark.slow
@pytest.mark.skipif(
    not FULL_WANTED, reason="the full storm runs with MONODUTY_FAULTS=full (tests/faults/run)"
)
@pytest.mark.timeout(1800)
async def test_the_full_worker_sigkill_storm_loses_nothing(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    results = []
    for size in FULL:
        folder = tmp_path / size.name.replace(" ", "-").replace(",", "")
        folder.mkdir()
        results.append(await run_storm(size, services, pool, account, fake_providers, folder))
        fake_providers.requests.clear()
    print(write_artefact(results, out_folder(tmp_path), "storm").read_text())
    for figures in results:
        assert_sound(figures)
