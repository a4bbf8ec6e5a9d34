"""The one outbound HTTP call point for providers (Twilio-compatible APIs, ntfy, chat webhooks).

    post(...)
     ├─ 2xx                            → ProviderResponse
     ├─ 408, 425, 429, 5xx             → DeliveryError(permanent=False, retry_after=<Retry-After>)
     ├─ any other status               → DeliveryError(permanent=True)
     ├─ a forbidden address            → DeliveryError(permanent=True)  (engine.channels.egress)
     ├─ no answer within the timeout   → DeliveryError(permanent=False)
     └─ refused, DNS failure, reset…   → DeliveryError(permanent=False)

Retry-After is the header, else what the body says where a platform puts it there: Discord's
``{"retry_after": 1.5}``, Telegram's ``{"parameters": {"retry_after": 3}}`` (seconds both) and
Matrix's ``{"retry_after_ms": 2000}``.
A platform that answers 2xx and means failure (Slack-compatible servers' ``invalid_token`` body)
is read by its channel, from the ``ProviderResponse``.

At most ``ANSWER_LIMIT`` bytes of an answer are read (a receipt or an error is a few hundred
bytes; a provider, or whatever answers at its URL, could otherwise send a worker gigabytes): the
status alone decides the outcome, and the connection of a cut answer is closed, not reused.

Error messages name the provider and the status, plus a short snippet of what the provider said.
They never carry the URL (it holds Twilio account ids, and on public ntfy servers the topic is
the only thing keeping a feed private) and never a credential: the request's Authorization value
and the ``secrets`` the caller names are blanked out of anything the provider echoes back.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine import retry
from engine.channels.base import DeliveryError
from engine.channels.egress import TargetRefused

log = logging.getLogger("monoduty.http")

SNIPPET_LENGTH = 200
ANSWER_LIMIT = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class ProviderResponse:
    """A 2xx answer: its status, headers, JSON body (None unless JSON) and raw text."""

    status: int
    headers: Mapping[str, str]
    json: Any
    text: str


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    data: Any = None,
    payload: Any = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    timeout: float,  # noqa: ASYNC109 - per request, handed to aiohttp (it bounds the body read too)
    method: str = "POST",
) -> ProviderResponse:
    """POST (or ``method``) to a provider and classify the outcome; see the module docstring.

    ``data`` is sent as it is (a dict form-encoded), ``payload`` as JSON.

    ``provider`` is a short name ("twilio", "ntfy") used in error messages and logs in place of
    the URL. Credentials travel in ``headers`` (``Authorization``); ``secrets`` lists the raw
    values behind them (a basic-auth password) so they can be blanked too. ``timeout`` bounds
    the whole exchange, connection and body included.
    """
    started = time.perf_counter()
    try:
        async with session.request(
            method,
            url,
            data=data,
            json=payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            # A redirect on a provider's POST API means a wrong base URL; following it would
            # replay the message (and credentials) somewhere we were not configured to talk to.
            allow_redirects=False,
        ) as response:
            raw = await _read_capped(response, ANSWER_LIMIT)
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        raise DeliveryError(
            f"{provider}: no answer within {timeout:g}s", permanent=False, maybe_sent=True
        ) from None
    except TargetRefused as exc:  # an address literal, refused before connecting
        raise DeliveryError(f"{provider}: refused: {exc}", permanent=True) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, TargetRefused):  # a name that resolved to a forbidden address
            raise DeliveryError(f"{provider}: refused: {exc.os_error}", permanent=True) from None
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        raise DeliveryError(f"{provider}: cannot connect ({reason})", permanent=False) from None
    except aiohttp.InvalidURL:
        raise DeliveryError(f"{provider}: the configured URL is invalid", permanent=True) from None
    except aiohttp.ClientError as exc:
        # Reset, disconnect mid-answer, malformed response: the request may not have arrived.
        raise DeliveryError(
            f"{provider}: connection failed ({type(exc).__name__})", permanent=False, maybe_sent=True
        ) from None

    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    log.debug("%s answered %s", provider, status, extra={"status": status, "latency_ms": elapsed_ms})
    text = raw.decode("utf-8", errors="replace")  # every provider we speak to answers UTF-8
    body = _parse_json(text, answer_headers.get("Content-Type", ""))
    outcome = retry.classify_status(status)
    if outcome == "ok":
        return ProviderResponse(status=status, headers=answer_headers, json=body, text=text)

    detail = _detail(body, text, _secrets(secrets, headers))
    message = f"{provider} answered {status}" + (f": {detail}" if detail else "")
    if outcome == "transient":
        retry_after = retry.parse_retry_after(answer_headers.get("Retry-After"))
        if retry_after is None:
            retry_after = _body_retry_after(body)
        raise DeliveryError(message, permanent=False, retry_after=retry_after)
    raise DeliveryError(message, permanent=True)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's first ``limit`` bytes (all of it when shorter).

    The rest is never read: aiohttp closes, rather than reuses, a connection whose answer was
    left unfinished when the ``async with`` ends, and its flow control stops reading from the
    socket once a little is buffered.
    """
    raw = bytearray()
    while len(raw) < limit:
        chunk = await response.content.read(limit - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)


def _parse_json(text: str, content_type: str) -> Any:
    # Some providers send JSON as text/plain; trust the shape as much as the header.
    if "json" not in content_type.lower() and not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _body_retry_after(body: Any) -> float | None:
    """Discord's ``retry_after`` or Telegram's ``parameters.retry_after`` (seconds), or Matrix's
    ``retry_after_ms``."""
    if not isinstance(body, dict):
        return None
    value, scale = body.get("retry_after"), 1.0
    if value is None and isinstance(body.get("parameters"), dict):
        value = body["parameters"].get("retry_after")
    if value is None:
        value, scale = body.get("retry_after_ms"), 1000.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return retry.parse_retry_after(str(value / scale))


def _detail(body: Any, text: str, secrets: list[str]) -> str:
    """The provider's own words about the failure, short, single-line and credential-free."""
    snippet = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # Microsoft's {"error": {"code": "WorkflowNotFound", "message": ...}}
    if isinstance(body, dict):
        # Twilio: {"code": 21211, "message": ...}; ntfy: {"code": 40101, "error": ...};
        # Telegram: {"ok": false, "error_code": 400, "description": ...}; Matrix: {"errcode", "error"}
        for key in ("message", "error", "description", "detail", "title"):
            if isinstance(body.get(key), str) and body[key].strip():
                snippet = body[key]
                break
        code = body.get("code", body.get("errcode"))
        if snippet and isinstance(code, int | str) and not isinstance(code, bool):
            snippet += f" (code {code})"
    elif body is None and not text.lstrip().startswith("<"):
        # Plain text is worth showing; an HTML error page from a proxy is noise.
        snippet = text
    for secret in secrets:
        snippet = snippet.replace(secret, "***")
    snippet = " ".join(_CONTROL.sub(" ", snippet).split())
    if len(snippet) > SNIPPET_LENGTH:
        snippet = snippet[: SNIPPET_LENGTH - 1] + "…"
    return snippet


def _secrets(secrets: Iterable[str], headers: Mapping[str, str] | None) -> list[str]:
    values = list(secrets)
    for name, value in (headers or {}).items():
        if name.lower() == "authorization":
            values += [value, value.partition(" ")[2]]
    # Longest first so a token is blanked whole, not around a shorter secret inside it; very short
    # values are skipped so blanking them cannot mangle ordinary words.
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)
