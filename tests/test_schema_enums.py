"""schema.sql's enum-like columns name the Python values they must match, and those agree."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent.parent / "schema.sql"
# "    status text NOT NULL DEFAULT 'pending',  -- engine.alerts.lifecycle.AlertStatus"
_NAMED = re.compile(r"^\s*(\w+)\s.*--\s*(engine(?:\.\w+)+)\s*$", re.M)


def named_columns() -> list[tuple[str, str, str]]:
    """(table, column, dotted name) for each column whose comment names a Python object."""
    found = []
    for chunk in re.split(r"(?=CREATE TABLE)", SCHEMA.read_text()):
        table = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", chunk)
        if table:
            found += [(table.group(1), column, name) for column, name in _NAMED.findall(chunk)]
    return found


def resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_named_object_exists() -> None:
    columns = named_columns()
    assert len(columns) >= 6
    for table, column, dotted in columns:
        try:
            resolve(dotted)
        except (ImportError, AttributeError):
            raise AssertionError(f"{table}.{column} names {dotted}, which does not exist") from None


# Values Python has but never stores in that column.
NOT_STORED = {
    ("health_samples", "status"): {"unknown"},  # a component's level; samples hold the overall
    ("heartbeats", "status"): {"late"},  # shown for an up heartbeat whose ping is overdue
}


def test_check_constraints_allow_exactly_the_python_values() -> None:
    schema = SCHEMA.read_text()
    checked = 0
    for table, column, dotted in named_columns():
        check = re.search(rf"CONSTRAINT {table}_{column}_check CHECK \({column} IN \(([^)]*)\)\)", schema)
        if check is None:
            continue
        allowed = set(re.findall(r"'([^']*)'", check.group(1)))
        values = {str(value) for value in resolve(dotted)}  # type: ignore[attr-defined]
        assert allowed == values - NOT_STORED.get((table, column), set()), f"{table}.{column}"
        checked += 1
    assert checked >= 4
