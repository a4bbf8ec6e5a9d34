"""Requests Twilio makes to Monoduty (a call's key presses, replies to SMS pages), believed only once their
X-Twilio-Signature checks out: 403 before anything in them is read or done.

Twilio signs the URL it requested, which is the one Monoduty gave it: MONODUTY_PUBLIC_URL, then
this request's path and query as they arrived, whatever Host header the request came with (a
proxy on the way may have changed it). The key is the Twilio auth token, so without Twilio
configured (or a public URL to have given it) no request is Twilio's.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from api.state import SETTINGS
from engine.channels import twilio_signature
from engine.errors import Forbidden

FORM = "application/x-www-form-urlencoded"


async def signed_form(request: web.Request) -> Mapping[str, str]:
    """The request's form parameters, if Twilio signed them and this URL; else Forbidden."""
    settings = request.app[SETTINGS]
    if request.content_type != FORM:  # Twilio posts forms; nothing else is read
        raise _refused()
    form = await request.post()
    params = [(name, value) for name, value in form.items() if isinstance(value, str)]
    given = request.headers.get(twilio_signature.HEADER)
    if settings.twilio is None or settings.public_url is None or len(params) != len(form):
        raise _refused()
    url = settings.public_url.rstrip("/") + request.raw_path
    if not twilio_signature.is_valid(settings.twilio.auth_token, url, params, given):
        raise _refused()
    return dict(params)


def _refused() -> Forbidden:
    return Forbidden(
        f"missing or wrong {twilio_signature.HEADER}: not a request from Twilio",
        code="TWILIO_SIGNATURE_INVALID",
    )
