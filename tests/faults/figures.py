"""Where each fault scenario writes its figures, before it asserts them (tests/faults/run prints them).

``write_figures(stem, title, intro, table, data, tmp_path, notes)`` writes ``stem``.json (``data``,
every figure) and ``stem``.md (``intro``, ``table``, a list of rows whose first is the header, and
any ``notes`` lines) to ``MONODUTY_FAULTS_OUT``, or the test's temporary folder, and returns the
markdown.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

FULL_WANTED = os.environ.get("MONODUTY_FAULTS") == "full"


def out_folder(tmp_path: Path) -> Path:
    return Path(os.environ.get("MONODUTY_FAULTS_OUT") or tmp_path / "faults")


def write_figures(
    stem: str,
    title: str,
    intro: str,
    table: list[list[str]],
    data: Any,
    tmp_path: Path,
    notes: list[str] | None = None,
) -> str:
    folder = out_folder(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# {title}", "", f"{intro} ({when}, load {os.getloadavg()[0]:.1f})", ""]
    if table:
        lines.append("| " + " | ".join(table[0]) + " |")
        lines.append("|" + "---|" * len(table[0]))
        lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if notes:
        lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    (folder / f"{stem}.md").write_text(text)
    print(text)
    return text
