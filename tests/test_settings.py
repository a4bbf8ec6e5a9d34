"""Configuration from MONODUTY_* variables: strict, with *_FILE for secrets, never echoing values."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import RateLimit, Settings, SettingsError


def test_defaults_outside_and_inside_dev() -> None:
    prod = Settings.from_env({})
    dev = Settings.from_env({}, dev=True)
    assert (prod.require_https, prod.allow_signup, prod.outbox) == (True, False, False)
    assert (dev.require_https, dev.allow_signup, dev.outbox) == (False, True, True)
    assert prod.rate_limit_api == RateLimit(600, 60)
    assert prod.rate_limit_inbound == RateLimit(120, 60)
    assert prod.max_attempts == 5
    assert prod.channel_concurrency == 40
    assert Settings.from_env({"MONODUTY_CHANNEL_CONCURRENCY": "7"}).channel_concurrency == 7


def test_providers_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    settings = Settings.from_env(
        {
            "MONODUTY_SMTP_HOST": "smtp.example.com",
            "MONODUTY_SMTP_TLS": "tls",
            "MONODUTY_SMTP_FROM": "alerts@example.com",
            "MONODUTY_TWILIO_ACCOUNT_SID": "AC123",
            "MONODUTY_TWILIO_AUTH_TOKEN_FILE": str(secret),
            "MONODUTY_TWILIO_FROM": "+15005550006",
            "MONODUTY_TWILIO_BASE_URL": "http://127.0.0.1:9999/",
            "MONODUTY_NTFY_URL": "https://ntfy.example.com/",
            "MONODUTY_RATE_LIMIT_INBOUND": "10/second",
        }
    )
    assert settings.smtp is not None and (settings.smtp.port, settings.smtp.tls) == (465, "tls")
    assert settings.twilio is not None and settings.twilio.auth_token == "s3cret-token"
    assert settings.twilio.base_url == "http://127.0.0.1:9999"
    assert settings.twilio.machine_detection is False
    assert settings.ntfy is not None and settings.ntfy.url == "https://ntfy.example.com"
    assert settings.rate_limit_inbound == RateLimit(10, 1)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MONODUTY_MAX_ATTEMPTS": "lots"}, "MONODUTY_MAX_ATTEMPTS"),
        ({"MONODUTY_MAX_ATTEMPTS": "0"}, "MONODUTY_MAX_ATTEMPTS"),
        ({"MONODUTY_CHANNEL_CONCURRENCY": "0"}, "MONODUTY_CHANNEL_CONCURRENCY"),
        ({"MONODUTY_CHANNEL_CONCURRENCY": "forty"}, "MONODUTY_CHANNEL_CONCURRENCY"),
        ({"MONODUTY_REQUIRE_HTTPS": "maybe"}, "MONODUTY_REQUIRE_HTTPS"),
        ({"MONODUTY_RATE_LIMIT_API": "600 per minute"}, "MONODUTY_RATE_LIMIT_API"),
        ({"MONODUTY_SMTP_HOST": "h", "MONODUTY_SMTP_TLS": "ssl"}, "MONODUTY_SMTP_TLS"),
        (
            {"MONODUTY_TWILIO_ACCOUNT_SID": "AC1", "MONODUTY_TWILIO_FROM": "+1555"},
            "MONODUTY_TWILIO_AUTH_TOKEN",
        ),
        (
            {"MONODUTY_SMTP_HOST": "h", "MONODUTY_SMTP_PASSWORD": "pw", "MONODUTY_SMTP_PASSWORD_FILE": "/x"},
            "MONODUTY_SMTP_PASSWORD",
        ),
        (
            {"MONODUTY_SMTP_HOST": "h", "MONODUTY_SMTP_PASSWORD_FILE": "/nonexistent/secret"},
            "MONODUTY_SMTP_PASSWORD",
        ),
    ],
)
def test_bad_values_name_the_variable_not_the_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert named in str(raised.value)
    for value in env.values():
        if len(value) > 3:
            assert value not in str(raised.value)


def test_machine_detection_is_a_switch_of_the_twilio_account() -> None:
    env = {
        "MONODUTY_TWILIO_ACCOUNT_SID": "AC1",
        "MONODUTY_TWILIO_AUTH_TOKEN": "t",
        "MONODUTY_TWILIO_FROM": "+1555",
    }
    settings = Settings.from_env({**env, "MONODUTY_TWILIO_MACHINE_DETECTION": "on"})
    assert settings.twilio is not None and settings.twilio.machine_detection is True
    with pytest.raises(SettingsError, match="MONODUTY_TWILIO_MACHINE_DETECTION"):
        Settings.from_env({**env, "MONODUTY_TWILIO_MACHINE_DETECTION": "sometimes"})


def test_an_empty_environment_gives_the_field_defaults() -> None:
    """The defaults are the dataclass's: Settings() in a test is what an unset deployment runs."""
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({}, dev=True) == Settings(dev=True, require_https=False, allow_signup=True)
