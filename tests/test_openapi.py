"""api/openapi.yaml describes every route the app serves, and nothing it does not."""

from __future__ import annotations

from pathlib import Path

import yaml

from api.app import create_app
from engine.channels.registry import CHANNEL_TYPES, TARGET_KEYS
from engine.settings import Settings
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
    assert schemas["ChannelType"]["enum"] == list(CHANNEL_TYPES)
    channel_type = {"$ref": "#/components/schemas/ChannelType"}
    assert schemas["Webhook"]["properties"]["notification_types"]["items"] == channel_type
    assert schemas["WebhookInput"]["properties"]["notificationTypes"]["items"] == channel_type
    assert sorted(schemas["TargetChannels"]["properties"]) == sorted(TARGET_KEYS.values())


def _resolve(spec: dict, item: dict) -> dict:
    while "$ref" in item:
        node: object = spec
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]  # type: ignore[index]
        item = node  # type: ignore[assignment]
    return item


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_dev_outbox_route_exists_outside_dev_too() -> None:
    # Outside dev it answers 404, but as a route: other methods get 405 like everywhere else.
    outside = create_app(Settings(database_url="postgresql://unused", redis_url="redis://unused"))
    paths = {route.resource.canonical for route in outside.router.routes() if route.resource}
    assert "/api/dev/outbox" in paths


def test_every_answer_has_a_schema_and_every_error_is_the_seed_format() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    for method, path, operation in _operations(spec):
        assert operation.get("operationId"), (method, path)
        # The drop-in PagerDuty and Opsgenie routes answer in their vendor's error shape.
        error = spec["components"]["schemas"][operation.get("x-error-schema", "Error")]
        for status, response in operation["responses"].items():
            response = _resolve(spec, response)
            content = response.get("content")
            assert content, f"{method.upper()} {path} {status} has no content"
            schemas = [_resolve(spec, media.get("schema", {})) for media in content.values()]
            assert all("schema" in media for media in content.values()), (method, path, status)
            if int(status) >= 400:
                assert schemas == [error], f"{method.upper()} {path} {status} is not the error format"


def test_every_api_operation_documents_the_answers_every_api_route_can_give() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    for method, path, operation in _operations(spec):
        if not path.startswith("/api/"):
            continue
        wanted = {"403", "429"}  # HTTPS_REQUIRED / CSRF, and the API rate limit
        if operation.get("security") != []:
            wanted.add("401")
        if "requestBody" in operation:
            wanted |= {"400", "413"}
        if path not in ("/api/status",):  # always 200 while the API runs, by design
            wanted.add("503")
        missing = wanted - set(operation["responses"])
        assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"


def test_links_name_operations_that_exist() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    ids = {operation["operationId"] for _, _, operation in _operations(spec)}
    links = [
        link
        for _, _, operation in _operations(spec)
        for response in operation["responses"].values()
        for link in _resolve(spec, response).get("links", {}).values()
    ]
    assert len(links) >= 8
    assert all(link["operationId"] in ids for link in links)
