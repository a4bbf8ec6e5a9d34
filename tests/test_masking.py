"""What `monoduty queue show` may print of a job's arguments: secrets hidden, ids and text kept."""

from __future__ import annotations

import pytest

from engine.masking import mask_target, mask_text, mask_value, preview

KEY = "md_live_Q2xhc3NpZmllZDEyMzQ1Njc4OTA"


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        (f"Authorization: Bearer {KEY}", KEY, "Authorization"),
        (f'{{"api_key": "{KEY}", "title": "DB down"}}', KEY, '"title": "DB down"'),
        ("password=hunter2&user=ops", "hunter2", "user=ops"),
        ("see https://ops:s3cr3t@grafana.example.com/d/1", "s3cr3t", "grafana.example.com"),
        (f"raw {KEY} in text", KEY, "raw"),
        ("call +1 415 555 0123 now", "555 0123", "call"),
        ("call 14155550123 now", "14155550123", "now"),
        # Shapes that hold no digit by chance: the key's prefix, a token as a path, a cookie.
        ("key md_live_QxhcsNmZpZWRlaWdodGVlbmxldHRlcnM here", "QxhcsNmZpZWRl", "here"),
        ("b'POST /hPqRsTuVwXyZaBcDeFgHiJkLmNoP\\x7f HTTP/1.1'", "TuVwXyZaBcDe", "HTTP/1.1"),
        ("GET /hooks/hPqRsTuVwXyZaBcDeFgHiJkLmNoP HTTP/1.1", "TuVwXyZaBcDe", "/hooks/"),
        ("Cookie: monoduty_session=hPqRsTuVwXyZaBcDeFgH; x", "TuVwXyZaBcDe", "Cookie"),
    ],
)
def test_secrets_are_hidden(text: str, hidden: str, kept: str) -> None:
    masked = mask_text(text)
    assert hidden not in masked
    assert kept in masked


@pytest.mark.parametrize(
    "text",
    [
        "alert 0b1d2c3e-1111-2222-3333-444455556666 received",
        "received 2026-11-26T10:00:00+00:00, severity critical",
        "disk /var at 91% on db-1",
        'File "/work/app/.venv/lib/python3.11/site-packages/aiohttp/web_protocol.py", line 446',
        "GET /api/webhooks/0b1d2c3e-1111-2222-3333-444455556666 answered ClientConnectorCertificateError",
    ],
)
def test_ids_dates_and_words_are_kept(text: str) -> None:
    assert mask_text(text) == text


def test_long_text_is_a_preview_with_its_size_and_named_secrets_are_hidden() -> None:
    body = "x" * 1000
    assert preview(body).endswith("... (1000 bytes)") and len(preview(body)) < 150
    masked = mask_value({"body": body, "headers": {"X-Auth-Token": "abc"}, "token": None, "n": 3})
    assert masked["headers"]["X-Auth-Token"] == "***"
    assert masked["token"] is None and masked["n"] == 3


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("+14155550123", "+1415\u2022\u2022\u20220123"),
        ("oncall@example.com", "o\u2022\u2022\u2022@example.com"),
        ("prod-alerts", "pr\u2022\u2022\u2022ts"),
        ("abc", "\u2022\u2022\u2022"),
        ("https://hooks.slack.com/services/T0/B0/XyZ1", "https://hooks.slack.com/\u2022\u2022\u2022XyZ1"),
        ("https://example.org:8443/in", "https://example.org:8443/\u2022\u2022\u2022"),  # short: no tail
        ("pover://userkey@apptoken", "pover://\u2022\u2022\u2022"),
        ("mmost://chat.example.org/token", "mmost://\u2022\u2022\u2022"),
    ],
)
def test_targets_are_recognisable_but_not_reusable(target: str, shown: str) -> None:
    assert mask_target(target) == shown


def test_provider_errors_lose_addresses_and_numbers_but_keep_codes() -> None:
    masked = mask_text("550 5.1.1 <oncall@example.com> unknown; To +14155550123 (code 21211) after 503")
    assert "oncall@" not in masked and "4155550123" not in masked
    assert "o\u2022\u2022\u2022@example.com" in masked  # still says which domain refused
    assert "(code 21211) after 503" in masked
