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

    assert {f.scenario for f in report.figures} == set("1234567")
    for figure in report.figures:
        assert len(figure.subject) == len(figure.baseline) == 1, figure
        assert figure.ratio is not None and figure.ratio >= 0, figure  # a queue may end empty
    text = out.read_text()
    for figure in report.figures:
        assert figure.name in text
    assert "shared, loaded machine" in text
    assert set(report.durations) == set("1234567")
    assert "Duration of each scenario" in text and "Not measured in this run" not in text
    # Scenario 1 counted its accepted alerts in Redis; scenarios 3 and 4 found their counters exact;
    # the storm made one incident and one page per channel; the CPU of each process was read.
    assert any(c.startswith("1: ") and "0 errors" in c for c in report.checks)
    assert any(c.startswith("3: ") and "(exact)" in c for c in report.checks)
    assert any(c.startswith("4: 2 worker(s)") and "(exact)" in c for c in report.checks)
    assert any(c.startswith("5: ") and "1 incident(s)" in c and "one per channel" in c for c in report.checks)
    assert report.cpu and all(per_alert["worker"] > 0 for per_alert in report.cpu.values())
