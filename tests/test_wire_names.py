"""The wire format stays at the edge: the engine never spells a request field the way the API's
clients do (``targetChannels``), so a rule written in the engine serves the API and the CLI alike
and api/inputs.py is the one place that translates (README, "Layout")."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from tests.support.factories import Account

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "api" / "openapi.yaml"


def _resolve(spec: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = spec
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> Iterator[str]:
    """The top-level property names of a request schema, through $ref and allOf."""
    schema = _resolve(spec, schema)
    yield from schema.get("properties", {})
    for part in schema.get("allOf", []):
        yield from _properties(spec, part)


def camel_case_request_fields() -> set[str]:
    """Every request body field of the API whose wire name is not also its Python name.

    Only /api/ routes: the drop-in PagerDuty and Opsgenie routes take the vendors' own bodies, which
    the engine's sender formats read by the vendors' names (as they read Alertmanager's)."""
    spec = yaml.safe_load(SPEC.read_text())
    names = {
        name
        for path, item in spec["paths"].items()
        if path.startswith("/api/")
        for operation in item.values()
        if isinstance(operation, dict) and "requestBody" in operation
        for media in _resolve(spec, operation["requestBody"])["content"].values()
        for name in _properties(spec, media["schema"])
    }
    return {name for name in names if name != name.lower()}


def string_literals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every string in code, f-strings' literal parts included; docstrings are left
    out (they may well describe what the API calls a thing)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def wire_names_in(source: str, names: set[str]) -> list[tuple[int, str]]:
    words = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    return [(line, text) for line, text in string_literals(ast.parse(source)) if words.search(text)]


def test_the_spec_has_camel_case_request_fields() -> None:
    # Guards the test below against passing on an empty list.
    assert {
        "notificationTypes",
        "targetChannels",
        "currentPassword",
        "dateRange",
    } <= camel_case_request_fields()


def test_the_finder_finds_a_wire_name_in_code() -> None:
    source = '"""The targetChannels of a webhook."""\nFIELD = "targetChannels"\nmsg = f"{x}: dateRange[0]"\n'
    assert wire_names_in(source, {"targetChannels", "dateRange"}) == [
        (2, "targetChannels"),
        (3, ": dateRange[0]"),
    ]


def test_no_engine_module_spells_a_request_field_as_the_wire_does() -> None:
    names = camel_case_request_fields()
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted((ROOT / "engine").rglob("*.py"))
        for line, text in wire_names_in(path.read_text(), names)
    ]
    assert found == [], "the engine names fields in Python (target_channels); api/ maps them to the wire"


HOOK = {"name": "Wire names", "notificationTypes": ["EMAIL"]}
# (route, a body with one mistake, the code, how the message starts): the field as the client wrote it.
REFUSALS = [
    (
        "/api/webhooks",
        {**HOOK, "notificationTypes": ["FAX"]},
        "VALIDATION_ERROR",
        "notificationTypes[0] must be",
    ),
    (
        "/api/webhooks",
        {**HOOK, "targetChannels": {"email": ["a@example.com", "b"]}},
        "VALIDATION_ERROR",
        "targetChannels.email[1] must be an email address",
    ),
    (
        "/api/webhooks",
        {**HOOK, "signingSecret": "short"},
        "VALIDATION_ERROR",
        "signingSecret must be 16 to 200",
    ),
    ("/api/webhooks", {**HOOK, "dedupBy": "x"}, "VALIDATION_ERROR", "dedupBy must be one of "),
    (
        "/api/webhooks",
        {**HOOK, "notifyOnResolve": ["CALL"]},
        "VALIDATION_ERROR",
        "notifyOnResolve[0]: a resolve never places a call",
    ),
    (
        "/api/webhooks",
        {**HOOK, "repageOnChange": "yes"},
        "VALIDATION_ERROR",
        "repageOnChange must be true or false",
    ),
    ("/api/auth/password", {"newPassword": "short"}, "WEAK_PASSWORD", "newPassword must be 8 to 256"),
    (
        "/api/auth/password",
        {"newPassword": "long enough 1", "currentPassword": 1},
        "VALIDATION_ERROR",
        "currentPassword must be a string",
    ),
    (
        "/api/reports/generate",
        {"type": "summary", "dateRange": "2024-03-05 to 2024-03-01"},
        "DATE_RANGE_REVERSED",
        "dateRange is reversed",
    ),
]


@pytest.mark.parametrize(("path", "body", "code", "starts"), REFUSALS, ids=[r[3] for r in REFUSALS])
async def test_refusals_name_the_field_as_the_client_wrote_it(
    client: TestClient, account: Account, path: str, body: dict[str, Any], code: str, starts: str
) -> None:
    resp = await client.post(path, json=body, headers=account.headers)
    data = await resp.json()
    assert (resp.status, data["code"]) == (400, code), data
    assert data["error"].startswith(starts), data["error"]


async def test_a_profile_refusal_names_push_topic_as_the_client_wrote_it(
    client: TestClient, account: Account
) -> None:
    resp = await client.patch("/api/auth/me", json={"pushTopic": "bad topic"}, headers=account.headers)
    assert resp.status == 400
    assert (await resp.json())[
        "error"
    ] == "pushTopic must be a push topic of 1-64 letters, digits, '_' or '-'"
