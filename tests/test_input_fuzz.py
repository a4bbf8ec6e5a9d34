"""Bad input is a 4xx in the seed's error format on every route, never a 500.

Table-driven, no randomness: every field of every JSON body gets every value in BAD_VALUES (wrong
types, huge numbers, NUL bytes, lone surrogates, long and odd unicode), every list route gets
odd query strings, every id route gets malformed ids. A new route adds a line to BODY_ROUTES,
QUERY_ROUTES or ID_ROUTES.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import RateLimit, Settings
from tests.support.factories import BODY, Account, create, path_of, signed_webhook, standard


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Sign-up open, and a rate limit no table here reaches (a 429 would hide what we test)."""
    return settings.with_(allow_signup=True, rate_limit_api=RateLimit(100_000, 60))


BAD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    10**40,
    1e308,
    [],
    [None],
    [[]],
    {},
    {"a": {}},
    "",
    " ",
    "\u0000",
    "bad\u0000value",
    "\ud800",
    "x" * 5000,
    "💥🔥" * 10,
    "‮evil",
    "+1 (415) 555-0100\u0000",
    "a@b.co\u0000",
]

# (method, path, fields of its body, a valid body the bad field is put into)
WEBHOOK_FIELDS = [
    "name",
    "description",
    "alias",
    "notificationTypes",
    "targetChannels",
    "status",
    "signingSecret",
]
VALID_WEBHOOK = {"name": "Fuzzed hook", "notificationTypes": ["EMAIL"]}
BODY_ROUTES: list[tuple[str, str, list[str], dict[str, Any]]] = [
    ("POST", "/api/webhooks", WEBHOOK_FIELDS, VALID_WEBHOOK),
    ("PATCH", "/api/webhooks/{id}", WEBHOOK_FIELDS, {}),
    ("POST", "/api/api-keys", ["name"], {"name": "a key"}),
    ("PATCH", "/api/auth/me", ["email", "name", "phone", "pushTopic"], {}),
    ("POST", "/api/auth/password", ["currentPassword", "newPassword"], {"newPassword": "a new password 1"}),
    ("POST", "/api/reports/generate", ["type", "dateRange", "format"], {"type": "summary"}),
    ("POST", "/api/auth/login", ["email", "password"], {"email": "a@b.co", "password": "whatever1"}),
    (
        "POST",
        "/api/auth/register",
        ["email", "password", "name", "phone"],
        {"email": "x@y.co", "password": "p" * 9},
    ),
]

BAD_QUERIES = [
    "limit=abc",
    "limit=-1",
    "limit=0",
    "limit=1e3",
    "limit=%C2%B2",  # "²": str.isdigit() says yes, int() says no
    "limit=" + "9" * 5000,  # past Python's int() digit limit
    "offset=%C2%B2",
    "offset=" + "9" * 5000,
    "offset=1.5",
    "unread=maybe",
    "cursor=%00",
    "cursor=not-a-cursor",
    "cursor=" + "A" * 3000,
    "limit=%00",
    "limit=1&limit=2",
]
QUERY_ROUTES = ["/api/webhooks", "/api/api-keys", "/api/notifications", "/api/response-time", "/api/uptime"]

BAD_IDS = ["not-a-uuid", "0", "%00", "00000000-0000-0000-0000-00000000000g", "1" * 300, "%C2%B2", "é"]
ID_ROUTES = [
    ("GET", "/api/webhooks/{id}"),
    ("PATCH", "/api/webhooks/{id}"),
    ("DELETE", "/api/webhooks/{id}"),
    ("POST", "/api/webhooks/{id}/test"),
    ("DELETE", "/api/api-keys/{id}"),
    ("POST", "/api/notifications/{id}/read"),
]


async def _expect_client_error(resp: Any, what: str) -> None:
    assert resp.status < 500 and resp.status != 429, f"{what}: {resp.status} {await resp.text()}"
    if resp.status >= 400:
        body = await resp.json()
        assert body["success"] is False and body["code"] and body["error"], what


@pytest.mark.parametrize(
    ("method", "path", "fields", "valid"), BODY_ROUTES, ids=[f"{r[0]} {r[1]}" for r in BODY_ROUTES]
)
async def test_bad_field_values_are_client_errors(
    client: TestClient, account: Account, method: str, path: str, fields: list[str], valid: dict[str, Any]
) -> None:
    webhook_id = (await create(client, account))["id"] if "{id}" in path else ""
    url = path.format(id=webhook_id)
    for field in fields:
        for value in BAD_VALUES:
            resp = await client.request(method, url, json={**valid, field: value}, headers=account.headers)
            await _expect_client_error(resp, f"{method} {path} {field}={value!r:.40}")


@pytest.mark.parametrize("path", QUERY_ROUTES)
async def test_bad_query_strings_are_client_errors(client: TestClient, account: Account, path: str) -> None:
    for query in BAD_QUERIES:
        resp = await client.get(f"{path}?{query}", headers=account.headers)
        await _expect_client_error(resp, f"{path}?{query[:40]}")


@pytest.mark.parametrize(("method", "path"), ID_ROUTES)
async def test_malformed_ids_are_not_found(
    client: TestClient, account: Account, method: str, path: str
) -> None:
    for bad in BAD_IDS:
        resp = await client.request(method, path.replace("{id}", bad), json={}, headers=account.headers)
        assert resp.status == 404, f"{method} {path} id={bad[:40]}: {resp.status} {await resp.text()}"
        assert (await resp.json())["success"] is False


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b'{"name": "x\xff"}', "application/json"),
    (b"null", "application/json"),
    (b"[]", "application/json"),
    (b'"a string"', "application/json"),
    (b"1e999", "application/json"),
    (b"NaN", "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"name": "ok"}', "application/json; charset=no-such-charset"),
    (b'{"name": "ok"}', "text/plain"),
    (b"name=ok", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(
    ("method", "path", "fields", "valid"), BODY_ROUTES, ids=[f"{r[0]} {r[1]}" for r in BODY_ROUTES]
)
async def test_bodies_that_are_not_json_objects_are_client_errors(
    client: TestClient, account: Account, method: str, path: str, fields: list[str], valid: dict[str, Any]
) -> None:
    webhook_id = (await create(client, account))["id"] if "{id}" in path else ""
    url = path.format(id=webhook_id)
    for raw, content_type in BAD_BODIES:
        headers = {**account.headers, "Content-Type": content_type}
        resp = await client.request(method, url, data=raw, headers=headers)
        await _expect_client_error(resp, f"{method} {path} body={raw[:30]!r} {content_type}")


@pytest.mark.parametrize("stamp", ["\u00b2", "9" * 5000, "-1", "1e9", " "])
async def test_odd_signature_timestamps_are_refused_not_crashed(
    client: TestClient, account: Account, redis: ArqRedis, stamp: str
) -> None:
    webhook = await signed_webhook(client, account)
    headers = {**standard(BODY), "webhook-timestamp": stamp}
    resp = await client.post(path_of(webhook), data=BODY, headers=headers)
    assert resp.status == 401, await resp.text()
    assert await redis.zcard("arq:queue") == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/webhooks", {**VALID_WEBHOOK, "status": None}, "status"),
        ("/api/reports/generate", {"type": "summary", "format": None}, "format"),
        ("/api/reports/generate", {"type": None}, "type"),
    ],
)
async def test_null_for_a_choice_names_the_field(
    client: TestClient, account: Account, path: str, body: dict[str, Any], field: str
) -> None:
    resp = await client.post(path, json=body, headers=account.headers)
    assert resp.status == 400
    assert (await resp.json())["code"] == "VALIDATION_ERROR" and field in (await resp.json())["error"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_cursor_past_the_calendar_is_a_400(client: TestClient, account: Account, moment: str) -> None:
    """A cursor is base64 a client can forge; one whose time leaves the calendar in UTC is refused."""
    raw = f"{moment}|{uuid.uuid4()}".encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    resp = await client.get(f"/api/notifications?cursor={cursor}", headers=account.headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("kind", ["summary", "detailed"])
@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
async def test_a_report_ending_on_the_last_representable_day_is_a_400(
    client: TestClient, account: Account, kind: str, fmt: str
) -> None:
    body = {"type": kind, "format": fmt, "dateRange": "9999-12-31 to 9999-12-31"}
    resp = await client.post("/api/reports/generate", json=body, headers=account.headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["code"] == "DATE_RANGE_MALFORMED"
