"""Settings never show a secret in their repr: one traceback with locals, one debug line of the
settings object, and the SMTP password or a database password would be in the logs."""

from __future__ import annotations

from engine.settings import Settings

SECRETS = {
    "MONODUTY_SMTP_PASSWORD": "smtp-secret-1",
    "MONODUTY_TWILIO_AUTH_TOKEN": "twilio-secret-2",
    "MONODUTY_NTFY_TOKEN": "ntfy-secret-3",
    "MONODUTY_METRICS_TOKEN": "metrics-secret-4",
    "MONODUTY_DATABASE_URL": "postgresql://monoduty:db-secret-5@db/monoduty",
    "MONODUTY_REDIS_URL": "redis://:redis-secret-6@redis:6379/0",
}


def test_repr_of_settings_holds_no_secret() -> None:
    env = {
        **SECRETS,
        "MONODUTY_SMTP_HOST": "smtp.example.com",
        "MONODUTY_TWILIO_ACCOUNT_SID": "AC123",
        "MONODUTY_TWILIO_FROM": "+15005550006",
        "MONODUTY_NTFY_URL": "https://ntfy.example.com",
    }
    settings = Settings.from_env(env)
    assert settings.smtp and settings.twilio and settings.ntfy  # every provider was configured
    text = repr(settings)
    assert "smtp.example.com" in text  # still useful to read
    for secret in (
        "smtp-secret-1",
        "twilio-secret-2",
        "ntfy-secret-3",
        "metrics-secret-4",
        "db-secret-5",
        "redis-secret-6",
    ):
        assert secret not in text
