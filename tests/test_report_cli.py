"""`monoduty report` as an operator runs it: a real process against the real database."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.support import report_data as data
from tests.support.processes import monoduty, monoduty_env
from tests.support.report_data import Seeded
from tests.support.services import Services


def env_for(services: Services) -> dict[str, str]:
    return monoduty_env(MONODUTY_DATABASE_URL=services.database_url)


def test_csv_and_pdf_files_match_the_data(services: Services, seeded: Seeded, tmp_path: Path) -> None:
    env, email = env_for(services), seeded.account.user.email
    out = tmp_path / "summary.csv"
    result = monoduty(
        "report",
        "--type",
        "summary",
        "--range",
        data.RANGE,
        "--format",
        "csv",
        "--output",
        str(out),
        "--user",
        email.upper(),
        "--progress",
        env=env,
    )
    assert result.stdout == ""
    assert "monoduty report: done" in result.stderr  # --progress shows even a quick one
    rows = {r["webhook"]: r for r in csv.DictReader(out.open(newline=""))}
    for name, want in data.expected_summary(seeded.alerts, seeded.names).items():
        assert (int(rows[name]["calls"]), int(rows[name]["failed"])) == (want["calls"], want["failed"])

    pdf = tmp_path / "incidents.pdf"
    monoduty(
        "report",
        "--type",
        "incidents",
        "--range",
        data.RANGE,
        "--format",
        "pdf",
        "-o",
        str(pdf),
        "--user",
        email,
        env=env,
    )
    text = "\n".join(p.extract_text() for p in PdfReader(pdf).pages)
    assert "Monoduty incidents report" in text and "Queue stuck" in text and data.OTHER_TITLE not in text


def test_json_goes_to_stdout(services: Services, seeded: Seeded) -> None:
    result = monoduty(
        "report",
        "--type",
        "performance",
        "--range",
        data.RANGE,
        "--user",
        seeded.account.user.email,
        env=env_for(services),
    )
    report = json.loads(result.stdout)
    assert report["overall"]["deliveries"] == data.expected_performance(seeded.alerts)[None]["deliveries"]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # over 5 s: run with the slow tests
def test_mistakes_are_clear_errors(services: Services, seeded: Seeded, tmp_path: Path) -> None:
    env = env_for(services)
    out = tmp_path / "r.csv"
    reversed_range = monoduty(
        "report",
        "--type",
        "summary",
        "--range",
        "2024-03-05 to 2024-03-01",
        "--format",
        "csv",
        "--output",
        str(out),
        "--user",
        seeded.account.user.email,
        env=env,
        check=False,
    )
    assert reversed_range.returncode != 0 and "reversed" in reversed_range.stderr
    assert not out.exists()
    several = monoduty("report", "--type", "summary", env=env, check=False)
    assert several.returncode != 0 and "--user" in several.stderr
    unknown = monoduty("report", "--type", "summary", "--user", "nobody@example.com", env=env, check=False)
    assert unknown.returncode != 0 and "nobody@example.com" in unknown.stderr
