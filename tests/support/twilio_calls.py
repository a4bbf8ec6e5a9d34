"""The far end of the calls the fake Twilio (tests/support/providers.py) places: each call played
as Twilio plays it, against the app under test.

``PhoneCalls(fake, client).to(number)`` lists the calls placed to a number. On the test's word a
call is answered (a call made with a ``Url``: Twilio requests it, with ``AnsweredBy`` when machine
detection is on) and keys are pressed: the ``<Gather>`` of the TwiML playing is posted its
``action`` with ``Digits`` and the parameters Twilio sends, or with no key the ``<Redirect>`` that
follows it is requested. Each request is form-encoded and carries an X-Twilio-Signature over the
URL written in the TwiML (MONODUTY_PUBLIC_URL based) and the parameters, made with the account's
auth token, or another one to forge it. It goes to the app where the test runs it, so the URL
signed is not the one the request reaches: as behind a proxy. What the app answers becomes the
TwiML playing. A call's sid is the one the create answered; how the call ended is posted to its
StatusCallback by tests/support/twilio_receipts.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient

from engine.channels import twilio_signature
from tests.support.providers import TWILIO_SID, TWILIO_TOKEN, FakeProviders, Request


@dataclass(frozen=True)
class Answered:
    """What the app answered one request of a call."""

    status: int
    body: str


@dataclass
class PlacedCall:
    """One call, as its callee's phone plays it."""

    sid: str
    to: str
    caller: str
    url: str | None  # the call was made to fetch its TwiML from here
    machine_detection: bool
    playing: str | None  # the TwiML playing now: the call's own, then each answer
    request: Request  # how it was created (its StatusCallback among the form fields)
    answers: list[Answered] = field(default_factory=list)
    last: tuple[str, dict[str, str]] | None = None  # the last request: URL and parameters

    @property
    def said(self) -> list[str]:
        """Every <Say> of the TwiML playing, nested ones included."""
        return [e.text or "" for e in _parse(self.playing).iter("Say")] if self.playing else []

    @property
    def hung_up(self) -> bool:
        return self.playing is not None and _parse(self.playing).find("Hangup") is not None


class PhoneCalls:
    """Plays the calls ``fake`` placed against ``client``'s app (see the module docstring)."""

    def __init__(self, fake: FakeProviders, client: TestClient, auth_token: str = TWILIO_TOKEN) -> None:
        self.fake = fake
        self.client = client
        self.auth_token = auth_token
        self._calls: dict[int, PlacedCall] = {}  # by the index of its request to the fake

    def to(self, number: str) -> list[PlacedCall]:
        """The calls placed to ``number`` so far (each create Twilio answered with a sid), oldest
        first (the same objects each time)."""
        return [
            self._call(index, request)
            for index, request in enumerate(self.fake.requests)
            if request.kind == "call" and request.target == number and request.sid is not None
        ]

    async def answer(self, call: PlacedCall, answered_by: str = "human") -> Answered:
        """Pick up a call made with a Url: Twilio requests it (``AnsweredBy`` with detection on)."""
        assert call.url is not None, "this call plays its own TwiML"
        extra = {"AnsweredBy": answered_by} if call.machine_detection else {}
        return await self._post(call, call.url, extra, self.auth_token)

    async def press(
        self, call: PlacedCall, digits: str | None, *, signed_with: str | None = None
    ) -> Answered:
        """Press ``digits`` at the menu playing (None: no key, the Gather times out and its
        Redirect is requested). ``signed_with``: another auth token (a forgery), "" for none."""
        gather = self._gather(call)
        if digits is None:
            url, extra = self._redirect(call), {}
        else:
            url, extra = gather.get("action", ""), {"Digits": digits}
        token = self.auth_token if signed_with is None else signed_with
        return await self._post(call, url, extra, token)

    async def replay(self, call: PlacedCall) -> Answered:
        """The call's last request once more, as Twilio retries one (signed again, the same)."""
        assert call.last is not None
        url, params = call.last
        return await self._send(call, url, params, self.auth_token)

    def _call(self, index: int, request: Request) -> PlacedCall:
        if index not in self._calls:
            self._calls[index] = PlacedCall(
                sid=str(request.sid),
                to=request.form["To"],
                caller=request.form["From"],
                url=request.form.get("Url"),
                machine_detection=request.form.get("MachineDetection") == "Enable",
                playing=request.form.get("Twiml"),
                request=request,
            )
        return self._calls[index]

    def _gather(self, call: PlacedCall) -> ET.Element:
        assert call.playing is not None, "nothing is playing: answer the call first"
        gather = _parse(call.playing).find("Gather")
        assert gather is not None, f"no menu in {call.playing}"
        assert gather.get("method", "POST") == "POST"
        return gather

    def _redirect(self, call: PlacedCall) -> str:
        assert call.playing is not None
        verbs = list(_parse(call.playing))
        after = verbs[[v.tag for v in verbs].index("Gather") + 1 :]
        redirect = next((v for v in after if v.tag == "Redirect"), None)
        assert redirect is not None and redirect.text, f"nothing follows the menu in {call.playing}"
        return redirect.text

    async def _post(self, call: PlacedCall, url: str, extra: dict[str, str], token: str) -> Answered:
        # What Twilio sends with every request of an outbound API call (its voice request parameters).
        params = {
            "AccountSid": TWILIO_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "From": call.caller,
            "To": call.to,
            "Called": call.to,
            "Caller": call.caller,
            **extra,
        }
        call.last = (url, params)
        return await self._send(call, url, params, token)

    async def _send(self, call: PlacedCall, url: str, params: dict[str, str], token: str) -> Answered:
        headers = {}
        if token:
            headers[twilio_signature.HEADER] = twilio_signature.signature(token, url, params.items())
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        resp = await self.client.post(path, data=params, headers=headers)
        answered = Answered(resp.status, await resp.text())
        call.answers.append(answered)
        if resp.status == 200:
            call.playing = answered.body
        return answered


def _parse(twiml: str) -> ET.Element:
    return ET.fromstring(twiml)  # noqa: S314 - the app's own TwiML; parsing it is the point
