"""The Opsgenie Alert API, drop-in: the official opsgenie-sdk pointed at Monoduty creates,
acknowledges and closes by alias with a GenieKey, and gets Opsgenie's answers and errors."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import asyncpg
import opsgenie_sdk
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, create, path_of, run_worker
from tests.support.incidents import pages_and_notices, sent, webhook_incidents

pytestmark = pytest.mark.usefixtures("loopback_only")

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def token_of(webhook: dict[str, Any]) -> str:
    return path_of(webhook).lstrip("/")


def alert_api(client: TestClient, key: str) -> opsgenie_sdk.AlertApi:
    """opsgenie-sdk as its users set it up; only its host points here (loopback, no proxy)."""
    conf = opsgenie_sdk.configuration.Configuration()
    conf.host = str(client.make_url("")).rstrip("/")
    conf.api_key["Authorization"] = key
    conf.api_key_prefix["Authorization"] = "GenieKey"
    conf.retry_enabled = False  # its retries would hide the first answer
    conf.proxy = None
    return opsgenie_sdk.AlertApi(opsgenie_sdk.ApiClient(conf))


def genie(key: str) -> dict[str, str]:
    return {"Authorization": f"GenieKey {key}", "Content-Type": "application/json"}


def assert_opsgenie_error(answer: dict[str, Any], message: str) -> None:
    assert answer["message"] == message
    assert isinstance(answer["took"], float)
    assert UUID.match(answer["requestId"])


async def test_opsgenie_sdk_create_acknowledge_close_by_alias_pages_once(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    api = alert_api(client, token_of(webhook))
    payload = opsgenie_sdk.CreateAlertPayload(
        message="Payments API p99 above 2 s",
        alias="payments-latency",
        description="p99 2.4 s for 10 minutes",
        priority="P2",
        tags=["payments", "prod"],
        details={"region": "eu-west-1"},
        entity="payments-api",
        source="grafana-prod",
        responders=[{"type": "team", "name": "payments"}],
    )
    created = await asyncio.to_thread(api.create_alert, payload)
    assert created.result == "Request will be processed"
    assert UUID.match(created.request_id)  # the alert's id
    await run_worker(settings)
    await asyncio.to_thread(api.create_alert, payload)  # Opsgenie dedups a repeat on its alias
    await run_worker(settings)
    ack = opsgenie_sdk.AcknowledgeAlertPayload(user="ana@example.com", note="looking")
    answer = await asyncio.to_thread(
        api.acknowledge_alert, "payments-latency", identifier_type="alias", acknowledge_alert_payload=ack
    )
    assert answer.result == "Request will be processed"
    await run_worker(settings)
    close = opsgenie_sdk.CloseAlertPayload(note="rolled back")
    await asyncio.to_thread(
        api.close_alert, "payments-latency", identifier_type="alias", close_alert_payload=close
    )
    await run_worker(settings)

    [found] = await webhook_incidents(client, account, webhook)
    assert found["dedup_key"] == "payments-latency"
    assert (found["status"], found["severity"], found["alert_count"]) == ("resolved", "error", 4)
    assert found["title"] == "Payments API p99 above 2 s"
    assert "p99 2.4 s for 10 minutes" in found["message"] and "region: eu-west-1" in found["message"]
    assert found["acknowledged_at"] is not None
    outbox = await sent(pool, webhook)
    pages, notices = pages_and_notices(outbox)
    assert pages == ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]
    assert notices == ["EMAIL", "PUSH_NOTIF"]
    assert [channel for channel, _ in outbox].count("CALL") == 1


async def test_a_wrong_genie_key_is_opsgenies_401_on_every_route(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    webhook = await create(client, account, WEBHOOK)
    api = alert_api(client, "x" * 32)
    with pytest.raises(opsgenie_sdk.exceptions.AuthenticationException) as refused:
        await asyncio.to_thread(api.create_alert, opsgenie_sdk.CreateAlertPayload(message="Disk full"))
    assert refused.value.status == 401
    assert_opsgenie_error(json.loads(refused.value.body), "Could not authenticate")
    body = json.dumps({"message": "Disk full"})
    wrong = [
        {},
        {"Authorization": f"Bearer {token_of(webhook)}"},  # the right token, not as a GenieKey
        {"Authorization": f"GenieKey {token_of(webhook)[:-1]}X"},
        {"Authorization": "GenieKey short"},
    ]
    for path in ("/v2/alerts", "/v2/alerts/a/close?identifierType=alias", "/v2/alerts/a/acknowledge"):
        for headers in wrong:
            resp = await client.post(path, data=body, headers=headers)
            assert resp.status == 401, (path, headers)
            assert_opsgenie_error(await resp.json(), "Could not authenticate")
    assert await redis.zcard("arq:queue") == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v2/alerts", {"alias": "a"}, "message"),
        ("/v2/alerts", {"message": "   "}, "message"),
        ("/v2/alerts", {"message": "Disk full", "priority": "P9"}, "priority"),
        ("/v2/alerts", {"message": "Disk full", "tags": "disk"}, "tags"),
        ("/v2/alerts", {"message": "Disk full", "details": {"nested": {"a": 1}}}, "details"),
        ("/v2/alerts", {"message": "Disk full", "alias": "a" * 513}, "alias"),
        ("/v2/alerts/disk/close", {}, "identifierType"),  # Opsgenie's default is id: none here
        ("/v2/alerts/disk/close?identifierType=tiny", {}, "identifierType"),
        ("/v2/alerts/disk/acknowledge?identifierType=alias", {"note": 5}, "note"),
    ],
)
async def test_a_bad_body_is_opsgenies_422_naming_the_field(
    client: TestClient, account: Account, redis: ArqRedis, path: str, body: dict[str, Any], field: str
) -> None:
    webhook = await create(client, account, WEBHOOK)
    resp = await client.post(path, data=json.dumps(body), headers=genie(token_of(webhook)))
    assert resp.status == 422
    answer = await resp.json()
    assert_opsgenie_error(answer, "Request body is not processable. Please check the errors.")
    assert list(answer["errors"]) == [field]
    assert await redis.zcard("arq:queue") == 0


async def test_not_json_is_400_and_paused_is_409_in_opsgenies_shape(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    webhook = await create(client, account, WEBHOOK)
    resp = await client.post("/v2/alerts", data=b"{nope", headers=genie(token_of(webhook)))
    assert resp.status == 400
    assert_opsgenie_error(await resp.json(), "Request body is not valid JSON")
    paused = {"status": "PAUSED"}
    resp = await client.patch(f"/api/webhooks/{webhook['id']}", json=paused, headers=account.headers)
    assert resp.status == 200
    resp = await client.post("/v2/alerts", json={"message": "Disk full"}, headers=genie(token_of(webhook)))
    assert resp.status == 409
    assert "paused" in (await resp.json())["message"]
    assert await redis.zcard("arq:queue") == 0


async def test_without_alias_each_create_is_its_own_incident_and_long_messages_are_kept(
    client: TestClient, account: Account, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    long = "Replication lag above 30 s on every replica of the orders cluster " * 3
    for message in ("Disk full on db-1", long):
        resp = await client.post("/v2/alerts", json={"message": message}, headers=genie(token_of(webhook)))
        assert resp.status == 202
        answer = await resp.json()
        assert set(answer) == {"result", "took", "requestId"}
        await run_worker(settings)
    lag, disk = await webhook_incidents(client, account, webhook)
    assert disk["title"] == "Disk full on db-1" and disk["severity"] == "warning"  # P3, Opsgenie's default
    assert uuid.UUID(disk["dedup_key"]) != uuid.UUID(lag["dedup_key"])
    assert lag["title"] == long[:130].rstrip()
    assert long.strip() in lag["message"]  # a message past Opsgenie's 130 characters is not cut off
