"""The settings a command runs with: the environment, plus the URLs of a running `monoduty dev`.

Its own module so that every command module (cli, queue_cli, ...) can use it without importing
the CLI that imports them.
"""

from __future__ import annotations

import os
import sys

from engine.settings import Settings, SettingsError

# Where `monoduty dev` keeps its embedded services; MONODUTY_DATA_DIR points other commands elsewhere.
DEFAULT_DATA_DIR = ".monoduty"


def load_settings(*, dev: bool = False) -> Settings:
    """Settings from the environment; URLs not set there come from a running `monoduty dev`."""
    try:
        settings = Settings.from_env(os.environ, dev=dev)
    except SettingsError as exc:
        sys.exit(f"monoduty: configuration error: {exc}")
    if not settings.database_url or not settings.redis_url:
        from monoduty.dev import running_services

        found = running_services(os.environ.get("MONODUTY_DATA_DIR", DEFAULT_DATA_DIR))
        settings = settings.with_(
            database_url=settings.database_url or found.get("database_url"),
            redis_url=settings.redis_url or found.get("redis_url"),
        )
    return settings
