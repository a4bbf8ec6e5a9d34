"""A small client for the Twilio REST API (or any server speaking it), shared by SMS and CALL.

Only the two calls we need: create a Message and create a Call. Errors come from
:func:`engine.channels.http.post`, already classified; this module adds nothing to the retry decision.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import aiohttp

from engine.channels import http
from engine.settings import TwilioSettings

PROVIDER = "twilio"
STATUS_ROUTE = "/twilio/status/"  # api/twilio_status.py serves it


def status_callback(public_url: str | None, delivery_id: uuid.UUID) -> str | None:
    """The StatusCallback URL of one delivery's SMS or call (None without a public URL).

    The delivery's id in the path is no secret and needs none: Twilio signs each callback with the
    auth token (X-Twilio-Signature), so nobody else can post one, and a replayed one changes nothing
    (engine.alerts.receipts). It lets a receipt that beats the worker's own record find its delivery.
    """
    return None if public_url is None else f"{public_url.rstrip('/')}{STATUS_ROUTE}{delivery_id}"


class TwilioClient:
    """Creates Messages and Calls on one account, with HTTP basic auth (account sid, auth token)."""

    def __init__(self, settings: TwilioSettings, session: aiohttp.ClientSession, timeout: float) -> None:
        self.settings = settings
        self.session = session
        self.timeout = timeout
        self._headers = {
            "Authorization": aiohttp.encode_basic_auth(settings.account_sid, settings.auth_token)
        }
        # The sid is an account id rather than a secret, but it has no business in error messages.
        self._secrets = (settings.account_sid, settings.auth_token)
        sid = quote(settings.account_sid, safe="")
        self._account_url = f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}"

    async def create_message(self, to: str, body: str, *, status_callback: str | None = None) -> str | None:
        """Send an SMS; returns Twilio's message sid (``SM...``). Twilio posts each change of the
        message's status (sent, delivered, undelivered...) to ``status_callback``, when given."""
        fields = {"To": to, "From": self.settings.from_number, "Body": body}
        if status_callback is not None:
            fields["StatusCallback"] = status_callback
        return await self._create("Messages.json", fields)

    async def create_call(
        self,
        to: str,
        *,
        twiml: str | None = None,
        url: str | None = None,
        status_callback: str | None = None,
    ) -> str | None:
        """Place a voice call that plays ``twiml``, or the TwiML Twilio fetches from ``url`` once the
        call is answered (give one); returns Twilio's call sid (``CA...``). When the call ends,
        Twilio posts how (completed, no-answer, busy...) to ``status_callback``, when given.

        With machine detection on, Twilio tells a person from a voicemail or fax before it plays
        anything, and names which in its request to ``url`` and to ``status_callback`` (``AnsweredBy``)."""
        assert (twiml is None) != (url is None), "a call plays either TwiML or a URL's"
        fields = {"To": to, "From": self.settings.from_number}
        fields.update({"Url": url} if url is not None else {"Twiml": twiml or ""})
        if self.settings.machine_detection:
            fields["MachineDetection"] = "Enable"
        if status_callback is not None:
            # Without StatusCallbackEvent Twilio posts only the call's end: all a receipt needs.
            fields["StatusCallback"] = status_callback
        return await self._create("Calls.json", fields)

    async def _create(self, resource: str, fields: dict[str, str]) -> str | None:
        response = await http.post(
            self.session,
            f"{self._account_url}/{resource}",
            provider=PROVIDER,
            data=fields,  # a dict is sent form-encoded, as Twilio expects
            headers=self._headers,
            secrets=self._secrets,
            timeout=self.timeout,
        )
        if isinstance(response.json, dict) and isinstance(response.json.get("sid"), str):
            return response.json["sid"]
        return None
