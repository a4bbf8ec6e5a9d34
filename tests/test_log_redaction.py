"""No secret reaches a log line, whoever writes it; a request aiohttp cannot parse gets our error JSON.

aiohttp answers a request with a control character in a header or in the request line itself,
before any middleware runs: by default with a text/plain 400 quoting that line, and an ERROR
traceback quoting it again (an API key, a webhook token). Driven over raw sockets against a real
`monoduty api`, since HTTP clients refuse to send such bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.test_utils import TestClient

from engine.observability import logs
from tests.support.factories import Account, create, path_of
from tests.support.logging_state import kept_logging
from tests.support.processes import ApiProcess, wait_for
from tests.support.services import Services


def raw_request(port: int, data: bytes) -> tuple[bytes, bytes]:
    """Write ``data`` byte for byte; the answer's head and body once the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def malformed_requests(key: str, token: str, session: str) -> list[bytes]:
    end = b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return [
        b"GET /api/webhooks HTTP/1.1\r\nAuthorization: Bearer " + key.encode() + b"\x01\r\n" + end,
        b"POST /" + token.encode() + b"\x7f HTTP/1.1\r\n" + end,
        b"POST /hooks/" + token.encode() + b"\x7fabc HTTP/1.1\r\n" + end,
        b"GET /api/webhooks HTTP/1.1\r\nCookie: monoduty_session=" + session.encode() + b"\x01\r\n" + end,
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_malformed_requests_get_error_json_and_log_no_secret(
    services: Services, account: Account, tmp_path: Path, log_format: str
) -> None:
    server = ApiProcess(
        services,
        tmp_path / "api.log",
        MONODUTY_LOG_LEVEL="DEBUG",
        MONODUTY_LOG_FORMAT=log_format,
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_SMTP_HOST="127.0.0.1",  # EMAIL configured; no worker runs, nothing is sent
    )
    try:
        async with aiohttp.ClientSession() as web:
            webhook = {"name": "leak", "notificationTypes": ["EMAIL"], "targetChannels": {"email": "a@b.io"}}
            async with web.post(server.url + "/api/webhooks", json=webhook, headers=account.headers) as resp:
                assert resp.status == 201, await resp.text()
                token = (await resp.json())["webhook"]["webhook_url"].rsplit("/", 1)[1]
        session = "Zq3xN8vR2mK5pW9tY4bH7cJ6dF1gL0sA"
        requests = malformed_requests(account.api_key, token, session)
        for request in requests:
            head, body = await asyncio.to_thread(raw_request, server.port, request)
            assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400"), head
            assert b"Content-Type: application/json" in head
            answer = json.loads(body)
            assert answer["success"] is False and answer["code"] == "BAD_REQUEST"
            assert set(answer) == {"success", "error", "code", "timestamp"}
            for secret in (account.api_key, token, session):
                assert secret[8:20].encode() not in body

        wait_for(
            lambda: server.output().count("malformed HTTP request") >= len(requests),
            "the refusals' log lines",
        )
    finally:
        server.stop()
    logged = server.output()
    for secret in (account.api_key, token, session):
        assert secret[8:20] not in logged  # not even the random part, cut from its prefix
    assert "Traceback" not in logged  # a client's bad bytes are not a server error


@pytest.fixture
def log_to() -> Iterator[None]:
    """Put logging back as it was after the test calls logs.configure."""
    with kept_logging():
        yield


KEY = "md_live_Ql8xTmVyZWZvcmVzdGF0dXNrZXlzZWNyZXQ"
TOKEN = "hPqRsTuVwXyZaBcDeFgHiJkLmNoPqRsT"  # a webhook token that happens to hold no digit


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(
    "logger", ["aiohttp.server", "arq.worker", "asyncpg.pool", "redis.connection", "monoduty"]
)
def test_every_logger_passes_through_the_redaction(log_to: None, log_format: str, logger: str) -> None:
    stream = io.StringIO()
    logs.configure(log_format, "DEBUG", stream)
    # A library's own handler would bypass ours: configure() takes them off.
    logging.getLogger(logger.partition(".")[0]).addHandler(logging.StreamHandler(io.StringIO()))
    logs.configure(log_format, "DEBUG", stream)
    log = logging.getLogger(logger)
    try:
        raise BadHttpMessage(f"Invalid header value char:\n\n  b'Authorization: Bearer {KEY}\\x01'")
    except BadHttpMessage:
        log.exception("Error handling request %s", f"POST /{TOKEN}\x7f HTTP/1.1")
    log.warning("redis://default:hunter2-redis@127.0.0.1:6379/0 refused", extra={"route": f"/hooks/{TOKEN}"})
    log.info(
        "session",
        extra={"request_id": "Cookie: monoduty_session=Zq3xN8vR2mK5pW9tYbHcJdFgLsA"},
        stack_info=True,
    )

    written = stream.getvalue()
    for secret in (KEY[8:], TOKEN[4:], "hunter2-redis", "N8vR2mK5pW9t"):
        assert secret not in written
    assert "Error handling request" in written and "BadHttpMessage" in written and logger in written
    assert "/hooks/" in written and "127.0.0.1:6379" in written  # the rest stays readable


# What Python prints itself, without logging: an exception ignored in __del__, one that ends a
# thread, one that ends the process. Each message holds a key in a form mask_text knows.
UNCAUGHT = """
import sys, threading
from engine.observability import logs

logs.configure(sys.argv[1], "INFO")
key = sys.argv[2]


class Leaky:
    def __del__(self):
        raise ValueError(f"cleanup failed for redis://default:{key}@127.0.0.1:6379/0")


Leaky()  # collected at once: "Exception ignored in"


def send():
    raise RuntimeError(f"thread failed, api key {key}")


thread = threading.Thread(target=send, name="sender")
thread.start()
thread.join()
raise RuntimeError(f"start failed: Authorization: Bearer {key}")
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_uncaught_and_ignored_exceptions_are_logged_redacted(tmp_path: Path, log_format: str) -> None:
    script = tmp_path / "uncaught.py"
    script.write_text(UNCAUGHT)
    done = subprocess.run(
        [sys.executable, str(script), log_format, KEY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )

    assert done.returncode == 1  # an uncaught exception still ends the process as before
    for said in ("Exception ignored in", "ValueError: cleanup failed", "thread failed", "start failed"):
        assert said in done.stderr, done.stderr
    assert KEY not in done.stderr and KEY[8:20] not in done.stderr, done.stderr
    if log_format == "json":  # every line went through logging: nothing printed past it
        records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
        assert [r["logger"] for r in records] == ["monoduty.uncaught"] * 3
        assert [r["level"] for r in records] == ["error", "error", "critical"]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_access_line_masks_a_request_id_that_looks_like_a_secret(
    log_to: None, log_format: str, client: TestClient, account: Account
) -> None:
    """The per-request line skips the redaction of the whole line (it is built from safe parts):
    a client's X-Request-Id holding a secret is still masked, the route pattern stands for the path."""
    stream = io.StringIO()
    logs.configure(log_format, "INFO", stream=stream)
    webhook = await create(client, account)
    secret_id = "Zq3xN8vR2mK5pW9tY4bH7cJ6dF1gL0sA"
    resp = await client.post(path_of(webhook), json={"title": "hi"}, headers={"X-Request-Id": secret_id})
    assert resp.status == 202
    assert resp.headers["X-Request-Id"] == secret_id  # the caller's id is still answered as sent

    line = next(ln for ln in stream.getvalue().splitlines() if "monoduty.access" in ln and "{token}" in ln)
    assert "POST /{token} 202" in line
    assert secret_id[4:24] not in line and webhook["webhook_url"].rsplit("/", 1)[1] not in line
