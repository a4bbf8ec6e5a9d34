"""MONODUTY_REDIS_URL and MONODUTY_DATABASE_POOLER as `Settings.from_env` reads them: a Sentinel URL
read into its parts, a malformed one refused with what is wrong (never the password it holds)."""

from __future__ import annotations

import pytest

from engine import redis_url
from engine.redis_url import SentinelTarget
from engine.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "redis+sentinel://127.0.0.1:26379/mymaster",
            SentinelTarget(sentinels=(("127.0.0.1", 26379),), service="mymaster"),
        ),
        (
            "redis+sentinel://:s3cret@sentinel-1:26379,sentinel-2:26380,[::1]:26381/mymaster/3",
            SentinelTarget(
                sentinels=(("sentinel-1", 26379), ("sentinel-2", 26380), ("::1", 26381)),
                service="mymaster",
                db=3,
                password="s3cret",
            ),
        ),
        (
            "redis+sentinel://app:p%40ss@h:1/svc?sentinel_password=other",
            SentinelTarget(
                sentinels=(("h", 1),),
                service="svc",
                username="app",
                password="p@ss",
                sentinel_password="other",
            ),
        ),
    ],
)
def test_a_sentinel_url_is_read_into_its_parts(url: str, target: SentinelTarget) -> None:
    assert redis_url.parse_sentinel(url) == target
    assert Settings.from_env({"MONODUTY_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://:s3cret@127.0.0.1/mymaster", "host:port"),
        ("redis+sentinel://:s3cret@127.0.0.1:26379,/mymaster", "host:port"),
        ("redis+sentinel://:s3cret@127.0.0.1:99999/mymaster", "host:port"),
        ("redis+sentinel://:s3cret@127.0.0.1:26379", "service"),
        ("redis+sentinel://:s3cret@127.0.0.1:26379/", "service"),
        ("redis+sentinel://:s3cret@127.0.0.1:26379/mymaster/zero", "db number"),
        ("redis+sentinel://:s3cret@127.0.0.1:26379/mymaster?ssl=1", "unknown options"),
        ("sentinel://:s3cret@127.0.0.1:26379/mymaster", "must start with"),
    ],
)
def test_a_malformed_redis_url_is_refused_at_start_up(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"MONODUTY_REDIS_URL": url})
    assert "MONODUTY_REDIS_URL" in str(caught.value) and says in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_plain_redis_urls_are_unchanged() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380/1", "unix:///run/redis.sock?db=2"):
        assert Settings.from_env({"MONODUTY_REDIS_URL": url}).redis_url == url


def test_pgbouncer_needs_a_direct_url_for_what_needs_a_session() -> None:
    with pytest.raises(SettingsError, match="MONODUTY_DATABASE_DIRECT_URL"):
        Settings.from_env({"MONODUTY_DATABASE_POOLER": "pgbouncer"})
    with pytest.raises(SettingsError, match="MONODUTY_DATABASE_POOLER"):
        Settings.from_env({"MONODUTY_DATABASE_POOLER": "pgpool"})
    settings = Settings.from_env(
        {
            "MONODUTY_DATABASE_URL": "postgresql://app@pgbouncer:6432/monoduty",
            "MONODUTY_DATABASE_POOLER": "pgbouncer",
            "MONODUTY_DATABASE_DIRECT_URL": "postgresql://app@db:5432/monoduty",
        }
    )
    assert settings.pgbouncer
    assert settings.session_database_url == "postgresql://app@db:5432/monoduty"
    plain = Settings.from_env({"MONODUTY_DATABASE_URL": "postgresql://app@db:5432/monoduty"})
    assert not plain.pgbouncer and plain.session_database_url == plain.database_url
