"""Bad input is a 4xx in the seed's error format on every route, never a 500 and never a 2xx.

Table-driven, no randomness: every field of every JSON body gets every value in BAD_VALUES (wrong
types, huge numbers, NUL bytes, lone surrogates, long and odd unicode), every list route gets
odd query strings, every id route gets malformed ids. A new route adds a line to BODY_ROUTES,
QUERY_ROUTES or ID_ROUTES.

Some of those values are good input for some fields (null clears a description, any text is a
name). They are listed, with the reason, in VALID_VALUES and IGNORED_PARAMS, and each of them
is asserted to be accepted; every other combination must be refused.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import RateLimit, Settings
from tests.support.factories import (
    BODY,
    TIMESTAMP,
    Account,
    create,
    new_account,
    path_of,
    signed_webhook,
    standard,
)


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
FIRST_PASSWORD = "the first password"  # what _url_for sets before /api/auth/password is fuzzed
BODY_ROUTES: list[tuple[str, str, list[str], dict[str, Any]]] = [
    ("POST", "/api/webhooks", WEBHOOK_FIELDS, VALID_WEBHOOK),
    ("PATCH", "/api/webhooks/{id}", WEBHOOK_FIELDS, {}),
    ("POST", "/api/api-keys", ["name"], {"name": "a key"}),
    ("PATCH", "/api/auth/me", ["email", "name", "phone", "pushTopic"], {}),
    (
        "POST",
        "/api/auth/password",
        ["currentPassword", "newPassword"],
        {"currentPassword": FIRST_PASSWORD, "newPassword": "a new password 1"},
    ),
    ("POST", "/api/reports/generate", ["type", "dateRange", "format"], {"type": "summary"}),
    ("POST", "/api/auth/login", ["email", "password"], {"email": "a@b.co", "password": "whatever1"}),
    (
        "POST",
        "/api/auth/register",
        ["email", "password", "name", "phone"],
        # an address nobody else in the session registers: a refusal is then about the bad field
        {"email": f"fuzz-{uuid.uuid4().hex[:12]}@example.com", "password": "p" * 9},
    ),
]
BODY_ROUTE_IDS = [f"{r[0]} {r[1]}" for r in BODY_ROUTES]

# The (route, field, value) combinations among BAD_VALUES that are in fact valid input: each must
# be accepted (2xx); every other combination must be refused. Keyed by repr(value), so that 0,
# False and "" stay apart.
# Text in any script, emoji and a bidi control included: kept as given, escaped wherever shown.
FREE_TEXT = ["💥🔥" * 10, "\u202eevil"]
CLEARED = [None, "", " "]  # an optional text: null or blank means none
VALID_VALUES: set[tuple[str, str, str]] = {
    (route, field, repr(value))
    for route, field, values in [
        # A webhook's or a key's name is any text of 3 characters or more.
        ("POST /api/webhooks", "name", FREE_TEXT),
        ("PATCH /api/webhooks/{id}", "name", FREE_TEXT),
        ("POST /api/api-keys", "name", FREE_TEXT),
        # A description and a user's name are optional text.
        ("POST /api/webhooks", "description", CLEARED + FREE_TEXT),
        ("PATCH /api/webhooks/{id}", "description", CLEARED + FREE_TEXT),
        ("POST /api/auth/register", "name", CLEARED + FREE_TEXT),
        ("PATCH /api/auth/me", "name", CLEARED + FREE_TEXT),
        # No targets (null or {}): every channel uses its owner's default contact.
        ("POST /api/webhooks", "targetChannels", [None, {}]),
        # null: no signing secret (on PATCH: remove it); 20 emoji are 20 characters, and any text
        # of 16 to 200 characters is a secret.
        ("POST /api/webhooks", "signingSecret", [None, FREE_TEXT[0]]),
        ("PATCH /api/webhooks/{id}", "signingSecret", [None, FREE_TEXT[0]]),
        # null clears a contact (or gives none at sign-up).
        ("POST /api/auth/register", "phone", [None]),
        ("PATCH /api/auth/me", "phone", [None]),
        ("PATCH /api/auth/me", "pushTopic", [None]),
        # A password is 8 to 256 characters of any text.
        ("POST /api/auth/register", "password", [FREE_TEXT[0]]),
        ("POST /api/auth/password", "newPassword", [FREE_TEXT[0]]),
        # null: the default range, the last 7 days.
        ("POST /api/reports/generate", "dateRange", [None]),
    ]
    for value in values
}

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
# Query parameters a route does not read are ignored whatever their value (as HTTP APIs do: a
# cache-buster must not break a call), so these (route, parameter) pairs are valid input.
IGNORED_PARAMS: set[tuple[str, str]] = {
    ("/api/webhooks", "unread"),
    ("/api/webhooks", "cursor"),
    ("/api/api-keys", "unread"),
    ("/api/api-keys", "cursor"),
    ("/api/notifications", "offset"),  # it pages by cursor
    *(("/api/response-time", name) for name in ("limit", "offset", "unread", "cursor")),
    *(("/api/uptime", name) for name in ("limit", "offset", "unread", "cursor")),
}

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
    """A 4xx (not 429: the tables must not reach a rate limit) in the seed's error format."""
    assert 400 <= resp.status < 500 and resp.status != 429, f"{what}: {resp.status} {await resp.text()}"
    body = await resp.json()
    assert body["success"] is False and body["code"] and body["error"], what
    assert TIMESTAMP.match(body["timestamp"]), what


async def _url_for(client: TestClient, account: Account, path: str) -> str:
    """The URL to fuzz, and what it needs first: a webhook for an {id}, a password to change
    (a key-only user has no current password, so currentPassword would mean nothing)."""
    if path == "/api/auth/password":
        first = {"newPassword": FIRST_PASSWORD}
        assert (await client.post(path, json=first, headers=account.headers)).status == 200
    webhook_id = (await create(client, account))["id"] if "{id}" in path else ""
    return path.format(id=webhook_id)


async def _expect_accepted(resp: Any, what: str) -> None:
    assert 200 <= resp.status < 300, f"{what}: {resp.status} {await resp.text()}"
    assert (await resp.json())["success"] is True, what


@pytest.mark.parametrize(("method", "path", "fields", "valid"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_bad_field_values_are_client_errors(
    client: TestClient, account: Account, method: str, path: str, fields: list[str], valid: dict[str, Any]
) -> None:
    url = await _url_for(client, account, path)
    for field in fields:
        for value in BAD_VALUES:
            if (f"{method} {path}", field, repr(value)) in VALID_VALUES:
                continue  # accepted, in the test below (on a fresh account: it changes things)
            resp = await client.request(method, url, json={**valid, field: value}, headers=account.headers)
            await _expect_client_error(resp, f"{method} {path} {field}={value!r:.40}")


@pytest.mark.parametrize(("route", "field", "value"), sorted(VALID_VALUES))
async def test_the_valid_values_among_them_are_accepted(
    client: TestClient, pool: asyncpg.Pool, route: str, field: str, value: str
) -> None:
    [(method, path, _, valid)] = [r for r in BODY_ROUTES if f"{r[0]} {r[1]}" == route]
    assert field in [f for r in BODY_ROUTES if f"{r[0]} {r[1]}" == route for f in r[2]]
    account = await new_account(pool)
    url = await _url_for(client, account, path)
    [parsed] = [v for v in BAD_VALUES if repr(v) == value]
    body = {**valid, field: parsed}
    if path == "/api/auth/register" and field != "email":
        body["email"] = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    resp = await client.request(method, url, json=body, headers=account.headers)
    await _expect_accepted(resp, f"{route} {field}={value:.40}")


@pytest.mark.parametrize("path", QUERY_ROUTES)
async def test_bad_query_strings_are_client_errors(client: TestClient, account: Account, path: str) -> None:
    for query in BAD_QUERIES:
        resp = await client.get(f"{path}?{query}", headers=account.headers)
        what = f"{path}?{query[:40]}"
        names = {pair.partition("=")[0] for pair in query.split("&")}
        if all((path, name) in IGNORED_PARAMS for name in names):
            await _expect_accepted(resp, what)
        else:
            await _expect_client_error(resp, what)


@pytest.mark.parametrize("path", ["/api/webhooks", "/api/api-keys", "/api/notifications"])
@pytest.mark.parametrize("name", ["limit", "cursor", "unread", "offset"])
async def test_a_parameter_given_twice_is_a_400_naming_it(
    client: TestClient, account: Account, path: str, name: str
) -> None:
    resp = await client.get(f"{path}?{name}=1&{name}=1", headers=account.headers)
    if (path, name) in IGNORED_PARAMS:
        await _expect_accepted(resp, f"{path} {name} twice")
        return
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["code"] == "VALIDATION_ERROR" and f"{name} may be given only once" in body["error"]


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


@pytest.mark.parametrize(("method", "path", "fields", "valid"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_bodies_that_are_not_json_objects_are_client_errors(
    client: TestClient, account: Account, method: str, path: str, fields: list[str], valid: dict[str, Any]
) -> None:
    url = await _url_for(client, account, path)
    for raw, content_type in BAD_BODIES:
        headers = {**account.headers, "Content-Type": content_type}
        resp = await client.request(method, url, data=raw, headers=headers)
        await _expect_client_error(resp, f"{method} {path} body={raw[:30]!r} {content_type}")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_json_sent_as_a_form_or_text_is_refused(
    client: TestClient, account: Account, content_type: str
) -> None:
    """What an HTML form on another site could send is not read as JSON, even when it parses."""
    headers = {**account.headers, "Content-Type": content_type}
    resp = await client.post("/api/api-keys", data=b'{"name": "a key"}', headers=headers)
    assert resp.status == 415, await resp.text()
    body = await resp.json()
    assert body["code"] == "UNSUPPORTED_MEDIA_TYPE" and "application/json" in body["error"]
    listed = await (await client.get("/api/api-keys", headers=account.headers)).json()
    assert listed["total"] == 1  # the account's own key only: nothing was made


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/merge-patch+json"])
async def test_json_without_a_json_content_type_is_still_read(
    client: TestClient, account: Account, content_type: str | None
) -> None:
    headers = {**account.headers, **({"Content-Type": content_type} if content_type else {})}
    resp = await client.post(
        "/api/api-keys", data=b'{"name": "a key"}', headers=headers, skip_auto_headers=["Content-Type"]
    )
    assert resp.status == 201, await resp.text()


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
