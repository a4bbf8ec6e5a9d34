"""The benchmark suite (bench/suite.py) in a CI-sized run: seconds, one run, no thresholds.

It asserts only that every scenario ran and produced its figures and baselines, so that the bench
never rots between the runs that measure (README "Benchmarks").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import suite
from tests.support.services import Services, another


@pytest.mark.slow  # tens of seconds: it starts the whole stack
@pytest.mark.timeout(300)  # a loaded machine: the run takes longer, and asserts no time
def test_every_scenario_runs_and_writes_its_figures(services: Services, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    options = suite.parse(["--smoke", "--out", str(out)])
    with another(services) as own:
        report = suite.run_suite(own, options, ["--smoke"])

    assert {f.scenario for f in report.figures} == {"1", "2", "3"}
    for figure in report.figures:
        assert len(figure.subject) == len(figure.baseline) == 1, figure
        assert figure.ratio is not None and figure.ratio > 0, figure
    text = out.read_text()
    for figure in report.figures:
        assert figure.name in text
    assert "shared, loaded machine" in text
    assert "Not yet measured" in text
    # Scenario 1 counted its accepted alerts in Redis; scenario 3 found its counters exact.
    assert any(c.startswith("1: ") and "0 errors" in c for c in report.checks)
    assert any(c.startswith("3: ") and "(exact)" in c for c in report.checks)
