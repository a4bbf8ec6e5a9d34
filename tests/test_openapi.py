"""api/openapi.yaml describes every route the app serves, and nothing it does not."""

from __future__ import annotations

from pathlib import Path

import yaml

from engine.channels.registry import CHANNEL_TYPES, TARGET_KEYS
from tests.support.routes import app_routes

SPEC = Path(__file__).resolve().parent.parent / "api" / "openapi.yaml"
METHODS = {"get", "post", "put", "patch", "delete"}


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
