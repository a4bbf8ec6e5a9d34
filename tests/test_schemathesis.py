"""schemathesis against a live `monoduty api`: every operation, with generated valid and invalid
requests, answers as api/openapi.yaml says (every check schemathesis has: no 5xx, status codes,
content types, headers and bodies as documented, invalid input refused, valid input accepted,
authentication not ignored, 405 for undeclared methods), and the links between operations hold
(a created webhook can be read, updated, tested and deleted; a deleted one is gone).

The default run is small and derandomised so it is the same every time and stays well under a
minute; ``-m slow`` adds a bigger one. A run by hand with the CLI (all phases, stateful
included): start a server as ``live_api`` does, copy tests/schemathesis.toml and add to the copy
``base-url``, ``headers = { Authorization = "Bearer <key>" }``, and the two per-operation
entries that ``call_kwargs`` makes (the second user's key for PATCH /api/auth/me and POST
/api/auth/password; a live webhook's token for POST /{token}), then::

    schemathesis --config-file my.toml run api/openapi.yaml --checks all --max-examples 100
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from engine.auth.api_keys import create_api_key
from engine.auth.users import create_user
from tests.support.processes import ApiProcess
from tests.support.services import Services

SPEC = Path(__file__).resolve().parent.parent / "api" / "openapi.yaml"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"

# Every channel configured (to addresses nothing listens on: no worker runs, nothing is sent), so
# that a webhook of any type is valid; limits raised so generated traffic is not throttled
# (429 is still documented and allowed); sign-up open so POST /api/auth/register is exercised.
SERVER_ENV = {
    "MONODUTY_REQUIRE_HTTPS": "off",
    "MONODUTY_ALLOW_SIGNUP": "on",
    "MONODUTY_RATE_LIMIT_API": "1000000/minute",
    "MONODUTY_RATE_LIMIT_INBOUND": "1000000/minute",
    "MONODUTY_SMTP_HOST": "127.0.0.1",
    "MONODUTY_SMTP_PORT": "9",
    "MONODUTY_SMTP_TLS": "none",
    "MONODUTY_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
    "MONODUTY_TWILIO_AUTH_TOKEN": "not-a-real-token",
    "MONODUTY_TWILIO_FROM": "+14155550199",
    "MONODUTY_TWILIO_BASE_URL": "http://127.0.0.1:9",
    "MONODUTY_NTFY_URL": "http://127.0.0.1:9",
    "MONODUTY_SECRET_KEY": "schemathesis-secret-key-0123456789abcdef",
}


@dataclass(frozen=True)
class LiveApi:
    url: str
    database_url: str
    user_id: uuid.UUID
    key: str
    profile_key: str
    token: str


# What a chain of calls may have left behind for the main user: the webhooks, keys and
# notifications it made (the fixed webhook and key stay), and its contact methods.
RESET = [
    "DELETE FROM webhooks WHERE user_id = $1 AND token <> $2",
    "DELETE FROM api_keys WHERE user_id = $1 AND name <> 'schemathesis'",
    "DELETE FROM notifications WHERE user_id = $1",
    "DELETE FROM contact_methods WHERE user_id = $1",  # their rules and codes go with them
    "DELETE FROM quiet_hours WHERE user_id = $1",
]


async def _reset(live: LiveApi) -> None:
    conn = await asyncpg.connect(live.database_url)
    try:
        await conn.execute(RESET[0], live.user_id, live.token)
        await conn.execute(RESET[1], live.user_id)
        await conn.execute(RESET[2], live.user_id)
        await conn.execute(RESET[3], live.user_id)
        await conn.execute(RESET[4], live.user_id)
    finally:
        await conn.close()


async def _users(database_url: str) -> list[tuple[uuid.UUID, str]]:
    """Two users with a default target for every channel, and an API key of each."""
    conn = await asyncpg.connect(database_url)
    try:
        made = []
        for _ in range(2):
            email = f"st-{uuid.uuid4().hex[:10]}@example.com"
            user = await create_user(conn, email, phone="+14155550100")
            await conn.execute("UPDATE users SET push_topic = 'st-alerts' WHERE id = $1", user.id)
            made.append((user.id, (await create_api_key(conn, user.id, "schemathesis"))[0]))
    finally:
        await conn.close()
    return made


def _create_webhook(url: str, key: str) -> str:
    body = json.dumps({"name": "schemathesis target", "notificationTypes": ["EMAIL"]}).encode()
    request = urllib.request.Request(
        f"{url}/api/webhooks",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["webhook"]["webhook_url"].rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def live_api(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    (user_id, key), (_, profile_key) = asyncio.run(_users(services.database_url))
    api = ApiProcess(services, tmp_path_factory.mktemp("schemathesis") / "api.log", **SERVER_ENV)
    try:
        token = _create_webhook(api.url, key)
        yield LiveApi(api.url, services.database_url, user_id, key, profile_key, token)
        assert "Traceback" not in api.output(), api.output()
    finally:
        api.stop()


# Loaded at import, as schemathesis's pytest integration wants (its fixture-based loader does not
# run under pytest 9); the live server's URL and keys are given to each call instead.
schema = schemathesis.openapi.from_path(SPEC, config=schemathesis.Config.from_path(CONFIG))

# Fixed and small: the same cases every run, a bounded time. database=None: no example database
# left in the tree, and nothing from an earlier run changes this one.
SMALL = settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

# A chain of calls changes what the server holds, so replaying one to shrink it does not see the
# same answers again (hypothesis then reports flaky generation instead of the failure): report the
# first failing chain as it was.
NO_SHRINK = (Phase.explicit, Phase.generate)

# Run as a second user: as the main one they would take away the default targets (phone, push
# topic) that webhooks made without targetChannels rely on, or set a password that every later
# change then needs.
PROFILE_OPERATIONS = {"PATCH /api/auth/me", "POST /api/auth/password"}


def call_kwargs(live: LiveApi, case: schemathesis.Case) -> dict[str, object]:
    """Where and as whom ``case`` is sent; POST /{token}, POST /{token}/v2/enqueue and the
    Opsgenie routes (as its GenieKey) get the live webhook's token (POST /hooks/{token} and POST
    /v2/enqueue keep generated ones, so unknown tokens are tried too)."""
    label = case.operation.label
    if label in ("POST /{token}", "POST /{token}/v2/enqueue"):
        case.path_parameters = {**(case.path_parameters or {}), "token": live.token}
    if label.startswith("POST /v2/alerts"):
        return {"base_url": live.url, "headers": {"Authorization": f"GenieKey {live.token}"}}
    key = live.profile_key if label in PROFILE_OPERATIONS else live.key
    return {"base_url": live.url, "headers": {"Authorization": f"Bearer {key}"}}


def check_case(live: LiveApi, case: schemathesis.Case) -> None:
    case.call_and_validate(**call_kwargs(live, case))


def run_workflow(live: LiveApi, hypothesis_settings: settings) -> None:
    """Chains of calls along the spec's links (create, then read, update, test, delete...)."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each chain starts from the same server state, so that hypothesis, which replays
            # chains, sees the same answers to the same calls (else: "flaky" generation).
            asyncio.run(_reset(live))

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return call_kwargs(live, case)

    Workflow.run(settings=hypothesis_settings)


@schema.parametrize()
@SMALL
def test_every_operation_conforms(case: schemathesis.Case, live_api: LiveApi) -> None:
    check_case(live_api, case)


def test_linked_operations_conform(live_api: LiveApi) -> None:
    run_workflow(live_api, settings(SMALL, max_examples=25, stateful_step_count=6, phases=NO_SHRINK))


@pytest.mark.slow
@schema.parametrize()
@settings(SMALL, max_examples=100)
def test_every_operation_conforms_at_length(case: schemathesis.Case, live_api: LiveApi) -> None:
    check_case(live_api, case)


@pytest.mark.slow
def test_linked_operations_conform_at_length(live_api: LiveApi) -> None:
    run_workflow(live_api, settings(SMALL, max_examples=60, stateful_step_count=8, phases=NO_SHRINK))
