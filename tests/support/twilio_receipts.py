"""Twilio's status callbacks for the messages and calls the local Twilio stand-in
(tests/support/providers.py) created: posted to the ``StatusCallback`` URL given at creation, with
the sid the stand-in answered, form-encoded with the parameters Twilio sends, and signed with
X-Twilio-Signature (engine.channels.twilio_signature) over that URL, or with another token to
forge one. As in tests/support/twilio_calls.py, the URL signed is the public one and the request
goes to the app under test (as behind a proxy)::

    receipts = StatusCallbacks(client)
    await receipts.message(request, "undelivered", error_code="30003")
    await receipts.call(placed.request, "completed", duration=42)

Each answers (status, JSON body) and keeps what it posted in ``posted``, so ``replay`` can send
one again as Twilio retries it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient

from engine.channels import twilio_signature
from tests.support.providers import TWILIO_SID, TWILIO_TOKEN, Request


class StatusCallbacks:
    """Posts Twilio's status callbacks to ``client``'s app (see the module docstring)."""

    def __init__(self, client: TestClient, auth_token: str = TWILIO_TOKEN) -> None:
        self.client = client
        self.auth_token = auth_token
        self.posted: list[tuple[str, dict[str, str]]] = []

    async def message(
        self, request: Request, status: str, *, error_code: str | None = None, signed_with: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A message's status changed to ``status`` (sent, delivered, undelivered, failed...)."""
        assert request.kind == "sms" and request.sid is not None, request
        params = {
            "AccountSid": TWILIO_SID,
            "ApiVersion": "2010-04-01",
            "From": request.form["From"],
            "To": request.form["To"],
            "MessageSid": request.sid,
            "SmsSid": request.sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        return await self._post(request, params, signed_with)

    async def call(
        self,
        request: Request,
        status: str,
        *,
        duration: int | None = None,
        answered_by: str | None = None,
        signed_with: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """A call ended as ``status`` (completed, no-answer, busy, failed, canceled), after
        ``duration`` seconds; ``answered_by`` as machine detection tells it."""
        assert request.kind == "call" and request.sid is not None, request
        params = {
            "AccountSid": TWILIO_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": request.sid,
            "CallStatus": status,
            "Direction": "outbound-api",
            "From": request.form["From"],
            "To": request.form["To"],
            "Called": request.form["To"],
            "Caller": request.form["From"],
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
            "Timestamp": format_datetime(datetime.now(UTC)),
        }
        if duration is not None:
            params["CallDuration"] = str(duration)
        if answered_by is not None:
            params["AnsweredBy"] = answered_by
        return await self._post(request, params, signed_with)

    async def replay(self, index: int = -1) -> tuple[int, dict[str, Any]]:
        """A callback posted before, once more (signed again, the same)."""
        url, params = self.posted[index]
        return await self._send(url, params, self.auth_token)

    async def _post(
        self, request: Request, params: dict[str, str], signed_with: str | None
    ) -> tuple[int, dict[str, Any]]:
        url = request.form.get("StatusCallback")
        assert url, f"created without a StatusCallback: {request.form}"
        self.posted.append((url, params))
        return await self._send(url, params, self.auth_token if signed_with is None else signed_with)

    async def _send(self, url: str, params: dict[str, str], token: str) -> tuple[int, dict[str, Any]]:
        headers = (
            {twilio_signature.HEADER: twilio_signature.signature(token, url, params.items())} if token else {}
        )
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        resp = await self.client.post(path, data=params, headers=headers)
        return resp.status, json.loads(await resp.text())
