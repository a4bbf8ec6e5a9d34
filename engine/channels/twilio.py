"""A small client for the Twilio REST API (or any server speaking it), shared by SMS and CALL.

Only the two calls we need: create a Message and create a Call. Errors come from
:func:`engine.channels.http.post`, already classified; this module adds nothing to the retry decision.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from engine.channels import http
from engine.settings import TwilioSettings

PROVIDER = "twilio"


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

    async def create_message(self, to: str, body: str) -> str | None:
        """Send an SMS; returns Twilio's message sid (``SM...``)."""
        return await self._create(
            "Messages.json", {"To": to, "From": self.settings.from_number, "Body": body}
        )

    async def create_call(self, to: str, *, twiml: str | None = None, url: str | None = None) -> str | None:
        """Place a voice call that plays ``twiml``, or the TwiML Twilio fetches from ``url`` once the
        call is answered (give one); returns Twilio's call sid (``CA...``).

        With machine detection on, Twilio tells a person from a voicemail or fax before it plays
        anything, and names which in its request to ``url`` (``AnsweredBy``)."""
        assert (twiml is None) != (url is None), "a call plays either TwiML or a URL's"
        fields = {"To": to, "From": self.settings.from_number}
        fields.update({"Url": url} if url is not None else {"Twiml": twiml or ""})
        if self.settings.machine_detection:
            fields["MachineDetection"] = "Enable"
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
