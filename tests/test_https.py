"""HTTPS: a real TLS listener, plain HTTP refused when required, forwarded proto from trusted proxies only."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import trustme
from arq.connections import ArqRedis

from engine.settings import Settings
from tests.support.factories import FULL, Account, assert_error, make_client, new_account
from tests.support.processes import ApiProcess
from tests.support.services import Services
from tests.support.sessions import web_user

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


async def test_tls_listener_serves_https_with_hsts(
    services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    account = await new_account(pool)
    who = await web_user(pool)
    server = ApiProcess(
        services, tmp_path / "tls.log", "--tls-cert", str(cert_file), "--tls-key", str(key_file)
    )  # MONODUTY_REQUIRE_HTTPS is on by default outside dev
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{server.url}/api/webhooks", headers=account.headers, ssl=client_ctx
            ) as resp:
                assert resp.status == 200
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
            login = {"email": who.email, "password": who.password}
            async with session.post(f"{server.url}/api/auth/login", json=login, ssl=client_ctx) as resp:
                assert resp.status == 200
                cookie = resp.headers["Set-Cookie"]
                assert "Secure" in cookie and "HttpOnly" in cookie
            # plain HTTP to the TLS port is not served
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{server.port}/api/webhooks") as resp:
                    await resp.read()
    finally:
        server.stop()


@pytest.fixture
def https_settings(settings: Settings) -> Settings:
    return settings.with_(require_https=True, trusted_proxies=("127.0.0.0/8",))


async def test_plain_http_is_refused_when_required(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    client = await make_client(settings.with_(require_https=True))
    try:
        resp = await client.get("/api/webhooks", headers=account.headers)
        assert resp.status == 403
        assert_error(await resp.json(), "HTTPS_REQUIRED")
        assert "Strict-Transport-Security" not in resp.headers
        assert (await client.post("/" + "x" * 32, json={})).status == 403  # inbound follows by default
        assert (await client.get("/healthz")).status == 200  # probes stay on plain HTTP
        # forwarded proto from an untrusted address changes nothing
        resp = await client.get("/api/webhooks", headers={**account.headers, **FORWARDED})
        assert resp.status == 403
    finally:
        await client.close()


async def test_inbound_can_be_let_through_on_plain_http(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    client = await make_client(settings.with_(require_https=True, require_https_inbound=False))
    try:
        assert (await client.post("/" + "x" * 32, json={})).status == 404  # reached the token lookup
        assert (await client.get("/api/webhooks", headers=account.headers)).status == 403
    finally:
        await client.close()


async def test_forwarded_proto_is_honoured_from_a_trusted_proxy(
    https_settings: Settings, redis: ArqRedis, pool: asyncpg.Pool, account: Account
) -> None:
    client = await make_client(https_settings.with_(public_url=None))
    try:
        resp = await client.post("/api/webhooks", json=FULL, headers={**account.headers, **FORWARDED})
        assert resp.status == 201
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        assert (await resp.json())["webhook"]["webhook_url"].startswith("https://")
        who = await web_user(pool)
        resp = await client.post(
            "/api/auth/login", json={"email": who.email, "password": who.password}, headers=FORWARDED
        )
        assert "Secure" in resp.headers["Set-Cookie"]
        assert (await client.get("/api/webhooks", headers=account.headers)).status == 403  # no header: plain
    finally:
        await client.close()


async def test_forwarded_proto_from_an_address_outside_the_trusted_ranges_is_ignored(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    client = await make_client(
        settings.with_(require_https=True, trusted_proxies=("10.0.0.0/8", "192.0.2.7"))
    )
    try:
        resp = await client.get("/api/webhooks", headers={**account.headers, **FORWARDED})
        assert resp.status == 403
    finally:
        await client.close()


async def test_forwarded_for_from_a_trusted_proxy_is_the_client_address(
    https_settings: Settings, redis: ArqRedis, pool: asyncpg.Pool
) -> None:
    """Login throttling counts the real client behind the proxy, not the proxy itself."""
    from engine.auth.accounts import MAX_FAILURES

    who = await web_user(pool)
    client = await make_client(https_settings)
    try:
        wrong = {"email": who.email, "password": "not the password"}
        for _ in range(MAX_FAILURES):
            await client.post("/api/auth/login", json=wrong, headers=FORWARDED)
        assert (await client.post("/api/auth/login", json=wrong, headers=FORWARDED)).status == 429
        elsewhere = {**FORWARDED, "X-Forwarded-For": "198.51.100.4"}
        resp = await client.post(
            "/api/auth/login", json={**wrong, "password": who.password}, headers=elsewhere
        )
        assert resp.status == 200
    finally:
        await client.close()


def test_proxy_and_https_settings_are_parsed_strictly() -> None:
    from engine.settings import SettingsError

    parsed = Settings.from_env({"MONODUTY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1"})
    assert parsed.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "::1")
    assert parsed.require_https and parsed.https_inbound
    assert not Settings.from_env({"MONODUTY_REQUIRE_HTTPS_INBOUND": "off"}).https_inbound
    assert not Settings.from_env({}, dev=True).https_inbound  # dev: plain HTTP everywhere
    with pytest.raises(SettingsError, match="MONODUTY_TRUSTED_PROXIES"):
        Settings.from_env({"MONODUTY_TRUSTED_PROXIES": "proxy.internal"})
