"""targetChannels: every target checked, every error naming the field a user must fix."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from api.inputs import wire_names
from api.webhooks import NAMES
from engine.channels.formats import TargetError, validate_email, validate_phone, validate_topic, validate_url
from engine.channels.registry import TARGET_KEYS
from engine.channels.targets import MAX_TARGETS, normalise_targets

ALL_TYPES = ["EMAIL", "SMS", "PUSH_NOTIF", "CALL"]

VALID_EMAILS = [
    ("admin@company.com", "admin@company.com"),
    ("  Ops.Team+alerts@Example.COM ", "Ops.Team+alerts@example.com"),  # the local part keeps its case
    ("o'brien@sub.domain.example.org", "o'brien@sub.domain.example.org"),
    ("x@bücher.example", "x@xn--bcher-kva.example"),  # IDN domain, stored in its ASCII form
    ("x@xn--bcher-kva.example", "x@xn--bcher-kva.example"),
]
INVALID_EMAILS = [
    "",
    "admin",
    "admin@",
    "@example.com",
    "admin@localhost",
    "a@@example.com",
    "a@b@example.com",
    "ad min@example.com",
    "admin@exa mple.com",
    "Bob <bob@example.com>",
    ".admin@example.com",
    "ad..min@example.com",
    "admin@example..com",
    "admin@-example.com",
    "admin@example.com.",
    "admin@example.c0m",
    "admin@exa_mple.com",
    "admin@example.com\r\nBcc: victim@example.org",
    "a" * 65 + "@example.com",
    "a@" + "b" * 250 + ".com",
]


@pytest.mark.parametrize(("raw", "expected"), VALID_EMAILS)
def test_valid_emails(raw: str, expected: str) -> None:
    assert validate_email(raw) == expected
    assert validate_email(expected) == expected  # idempotent: stored targets pass again


@pytest.mark.parametrize("raw", INVALID_EMAILS)
def test_invalid_emails(raw: str) -> None:
    with pytest.raises(TargetError) as caught:
        validate_email(raw, field="targetChannels.email")
    assert caught.value.field == "targetChannels.email"
    assert str(caught.value) == "targetChannels.email must be an email address like alice@example.com"


VALID_PHONES = [
    ("+14155550123", "+14155550123"),
    ("+1 (415) 555-0123", "+14155550123"),
    ("+44 20 7946 0958", "+442079460958"),
    ("+33.1.23.45.67.89", "+33123456789"),
    (" +491701234567 ", "+491701234567"),
    ("+1234567", "+1234567"),  # 7 digits: the shortest E.164 we accept
    ("+123456789012345", "+123456789012345"),  # 15 digits: the longest E.164 allows
]
INVALID_PHONES = [
    "",
    "14155550123",  # no +
    "0044 20 7946 0958",  # a dialling prefix, not E.164
    "+0 415 555 0123",  # country codes do not start with 0
    "+123456",
    "+1234567890123456",
    "+1 415 555 0123 ext 4",
    "+1-415-CALL-NOW",
    "++14155550123",
    "+1\u0664155550123",  # an Arabic-Indic digit: Python's \d matches it, no provider does
]


@pytest.mark.parametrize(("raw", "expected"), VALID_PHONES)
def test_valid_phones(raw: str, expected: str) -> None:
    assert validate_phone(raw) == expected
    assert validate_phone(expected) == expected


@pytest.mark.parametrize("raw", INVALID_PHONES)
def test_invalid_phones(raw: str) -> None:
    with pytest.raises(TargetError, match=r"^phone must be an E\.164 phone number like \+14155550123$"):
        validate_phone(raw)


@pytest.mark.parametrize("raw", ["alerts", "Prod_Alerts-2", "a", "x" * 64, "  padded  "])
def test_valid_topics(raw: str) -> None:
    assert validate_topic(raw) == raw.strip()


@pytest.mark.parametrize("raw", ["", "has space", "slash/topic", "dot.topic", "x" * 65, "émoji", "a?b=c"])
def test_invalid_topics(raw: str) -> None:
    with pytest.raises(TargetError) as caught:
        validate_topic(raw, field="targetChannels.push[0]")
    assert caught.value.field == "targetChannels.push[0]"


VALID_URLS = [
    ("https://Hooks.Slack.com/services/T0/B0/xYz", "https://hooks.slack.com/services/T0/B0/xYz"),
    ("  https://example.org  ", "https://example.org/"),
    ("https://bücher.de/hook?token=AbC", "https://xn--bcher-kva.de/hook?token=AbC"),
    ("http://127.0.0.1:8080/in", "http://127.0.0.1:8080/in"),
    ("http://[::1]:9/x", "http://[::1]:9/x"),
    ("http://localhost/x", "http://localhost/x"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID_URLS)
def test_valid_urls(raw: str, expected: str) -> None:
    assert validate_url(raw) == expected
    assert validate_url(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("ftp://example.org/x", "must be an https URL"),
        ("javascript:alert(1)", "must be an https URL"),
        ("https://", "must be an https URL"),
        ("https://example.org:99999/", "must be an https URL"),
        ("https://user:pw@example.org/", "must not carry user:password@"),
        ("https://example.org/#frag", "must not have a #fragment"),
        ("https://example.org/a b", "must be an https URL"),
        ("https://example.org/" + "x" * 2048, "must be an https URL"),
    ],
)
def test_invalid_urls(raw: str, problem: str) -> None:
    with pytest.raises(TargetError, match=problem):
        validate_url(raw, field="target")


@pytest.mark.parametrize("validate", [validate_email, validate_phone, validate_topic, validate_url])
@pytest.mark.parametrize("value", [None, 14155550123, ["a"], {"a": 1}])
def test_non_strings_are_refused(validate: Callable[..., str], value: object) -> None:
    with pytest.raises(TargetError, match=r"^x must be a string$"):
        validate(value, field="x")


# (targetChannels, notificationTypes, the result)
NORMALISED = [
    pytest.param(
        {"email": "admin@company.com", "sms": "+1234567890"},
        ["EMAIL", "SMS"],
        {"email": ["admin@company.com"], "sms": ["+1234567890"]},
        id="the seed's example",
    ),
    pytest.param(
        {"sms": ["+1 415 555 0123", "+14155550123", "+442079460958"]},
        ["SMS"],
        {"sms": ["+14155550123", "+442079460958"]},
        id="list, duplicates removed after normalising, order kept",
    ),
    pytest.param(
        {"email": ["b@x.org", "a@X.ORG", "b@x.org", "a@x.org"]},
        ["EMAIL"],
        {"email": ["b@x.org", "a@x.org"]},
        id="duplicate emails by domain case",
    ),
    pytest.param(
        {"call": "+14155550123", "push": "oncall", "email": "a@x.org"},
        ["CALL"],
        {"call": ["+14155550123"], "email": ["a@x.org"], "push": ["oncall"]},
        id="targets for disabled types are kept, enabled types first",
    ),
    pytest.param({}, ALL_TYPES, {}, id="empty object"),
    pytest.param(None, ["EMAIL"], {}, id="absent"),
    pytest.param(
        {"push": [f"topic{i}" for i in range(MAX_TARGETS)]},
        ["PUSH_NOTIF"],
        {"push": [f"topic{i}" for i in range(MAX_TARGETS)]},
        id="at the limit",
    ),
]


@pytest.mark.parametrize(("raw", "types", "expected"), NORMALISED)
def test_normalise_targets(raw: object, types: list[str], expected: dict[str, list[str]]) -> None:
    result = normalise_targets(raw, types)
    assert result == expected
    assert list(result) == list(expected)  # key order too
    assert normalise_targets(result, types) == result  # idempotent


# (targetChannels, the field the error names, the message)
# Every key of the registry, in its order (a new channel adds its own): "email, sms, push or call".
_KEYS = list(TARGET_KEYS.values())
KEYS_OR = f"{', '.join(_KEYS[:-1])} or {_KEYS[-1]}"
KEYS_AND = f"{', '.join(_KEYS[:-1])} and {_KEYS[-1]}"

REFUSED = [
    pytest.param(
        {"sms": ["+14155550123", "555-0123"]},
        "targetChannels.sms[1]",
        "targetChannels.sms[1] must be an E.164 phone number like +14155550123",
        id="second number of a list",
    ),
    pytest.param(
        {"email": "not-an-address"},
        "targetChannels.email",
        "targetChannels.email must be an email address like alice@example.com",
        id="single value",
    ),
    pytest.param(
        {"push": ["ok", "not ok"]},
        "targetChannels.push[1]",
        "targetChannels.push[1] must be a push topic of 1-64 letters, digits, '_' or '-'",
        id="topic",
    ),
    pytest.param(
        {"call": [14155550123]},
        "targetChannels.call[0]",
        "targetChannels.call[0] must be a string",
        id="number instead of string",
    ),
    pytest.param(
        {"mail": "a@x.org"},
        "targetChannels.mail",
        f"targetChannels.mail is not a channel: use {KEYS_OR}",
        id="unknown key",
    ),
    pytest.param(
        {"EMAIL": "a@x.org"},
        "targetChannels.EMAIL",
        f"targetChannels.EMAIL is not a channel: use {KEYS_OR}",
        id="type name instead of key",
    ),
    pytest.param(
        {"sms": []},
        "targetChannels.sms",
        "targetChannels.sms must be a string or a non-empty list of strings",
        id="empty list",
    ),
    pytest.param(
        {"sms": None},
        "targetChannels.sms",
        "targetChannels.sms must be a string or a non-empty list of strings",
        id="null",
    ),
    pytest.param(
        {"email": {"to": "a@x.org"}},
        "targetChannels.email",
        "targetChannels.email must be a string or a non-empty list of strings",
        id="object value",
    ),
    pytest.param(
        {"push": [f"topic{i}" for i in range(MAX_TARGETS + 1)]},
        "targetChannels.push",
        "targetChannels.push has 11 targets; at most 10 are allowed",
        id="over the limit",
    ),
    pytest.param(
        ["a@x.org"],
        "targetChannels",
        f"targetChannels must be an object with keys {KEYS_AND}",
        id="not an object",
    ),
    pytest.param(
        "a@x.org",
        "targetChannels",
        f"targetChannels must be an object with keys {KEYS_AND}",
        id="a bare string",
    ),
]


@pytest.mark.parametrize(("raw", "field", "message"), REFUSED)
def test_refused_targets_name_the_field(raw: object, field: str, message: str) -> None:
    # The engine names the field in Python; the API renames it to what the client wrote.
    with pytest.raises(TargetError) as in_engine:
        normalise_targets(raw, ALL_TYPES)
    assert in_engine.value.field == field.replace("targetChannels", "target_channels")
    with pytest.raises(TargetError) as caught, wire_names(NAMES):
        normalise_targets(raw, ALL_TYPES)
    assert (caught.value.field, str(caught.value), caught.value.message) == (field, message, message)
    assert isinstance(caught.value, ValueError)


def test_duplicates_are_dropped_within_the_limit() -> None:
    raw = {"sms": ["+14155550123"] * MAX_TARGETS}
    assert normalise_targets(raw, ["SMS"]) == {"sms": ["+14155550123"]}


def test_the_limit_counts_the_list_as_sent() -> None:
    # api/openapi.yaml says maxItems 10: a longer list is refused even when it repeats itself.
    raw = {"sms": ["+14155550123"] * (MAX_TARGETS + 1)}
    with pytest.raises(TargetError, match="has 11 targets; at most 10 are allowed"):
        normalise_targets(raw, ["SMS"])


def test_unknown_notification_type_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="unknown notification type 'FAX'") as caught:
        normalise_targets({}, ["FAX"])
    assert not isinstance(caught.value, TargetError)
