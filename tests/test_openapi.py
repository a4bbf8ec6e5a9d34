"""api/openapi.yaml describes every route the app serves, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from api.app import create_app
from engine.channels.registry import CHANNEL_TYPES, TARGET_KEYS
from engine.settings import Settings

SPEC = Path(__file__).resolve().parent.parent / "api" / "openapi.yaml"
METHODS = {"get", "post", "put", "patch", "delete"}


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="postgresql://unused", redis_url="redis://unused", dev=True))
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical if route.resource else ""
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # drop aiohttp's regex part
        routes.add((route.method.lower(), path))
    return routes


def spec_routes() -> set[tuple[str, str]]:
    spec = yaml.safe_load(SPEC.read_text())
    return {(method, path) for path, item in spec["paths"].items() for method in item if method in METHODS}


def test_app_and_spec_agree() -> None:
    assert app_routes() == spec_routes()


def test_channel_enums_are_the_registry() -> None:
    # The spec is a document clients read, so it spells the channels out; this keeps it honest.
    schemas = yaml.safe_load(SPEC.read_text())["components"]["schemas"]
    assert schemas["Webhook"]["properties"]["notification_types"]["items"]["enum"] == list(CHANNEL_TYPES)
    webhook_input = schemas["WebhookInput"]["properties"]
    assert webhook_input["notificationTypes"]["items"]["enum"] == list(CHANNEL_TYPES)
    assert list(webhook_input["targetChannels"]["properties"]) == list(TARGET_KEYS.values())
