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
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.http_exceptions import BadHttpMessage

from engine import logs
from tests.support.factories import Account
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
    """Put the root logger back as it was after the test calls logs.configure."""
    root = logging.getLogger()
    names = ("aiohttp", "aiohttp.access", "arq", "asyncpg", "redis", "asyncio")
    loggers = {name: logging.getLogger(name) for name in names}
    saved = (
        root.handlers[:],
        root.level,
        {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in loggers.items()},
    )
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, (handlers, level, propagate) in saved[2].items():
            loggers[name].handlers[:] = handlers
            loggers[name].setLevel(level)
            loggers[name].propagate = propagate


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
