"""Issue 17, scenario 6: provider faults, each on its own target at once (tests/faults/provider_faults.py
says what it runs and judges): a hang, 429 with Retry-After, 5xx forever under an escalation policy,
a slow drip, an enormous answer, a callback storm and forged callbacks, with a healthy webhook beside
them. One size (about half a minute), in CI (``-m slow``) and in tests/faults/run alike.

The run writes its figures (``provider-faults.json`` and ``.md``) to ``MONODUTY_FAULTS_OUT`` (the
test's temporary folder by default) before asserting them.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from tests.faults.provider_faults import ENORMOUS, RETRY_AFTER, run_faults, write_artefact
from tests.support.factories import Account
from tests.support.providers import FakeProviders
from tests.support.services import Services


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_each_provider_fault_has_its_outcome_and_spares_the_other_channels(
    services: Services, pool: asyncpg.Pool, account: Account, fake_providers: FakeProviders, tmp_path: Path
) -> None:
    figures = await run_faults(services, pool, account, fake_providers, tmp_path)
    folder = Path(os.environ.get("MONODUTY_FAULTS_OUT") or tmp_path / "faults")
    print(write_artefact(figures, folder, "provider-faults").read_text())
    assert figures.problems == []
    assert figures.retry_after_waited_s is not None and figures.retry_after_waited_s >= RETRY_AFTER
    assert figures.escalation_moved_on_s is not None  # step 2 paged long before its 30 minutes
    assert figures.healthy_delivered_before_hang_failed
    assert figures.enormous_streamed_mb * 1024 * 1024 < ENORMOUS / 10
    # Reading the enormous answer cost the worker nothing like its size.
    assert figures.worker_peak_rss_mb - figures.worker_rss_before_mb < ENORMOUS / 1024 / 1024 / 10
    assert figures.callback_storm == {"200": 100}
    assert figures.receipt_events_added_by_repeats == 0
    assert figures.forged == {"wrong signature": 403, "no signature": 403}
