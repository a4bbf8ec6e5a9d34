"""Test doubles that speak the real provider protocols over real sockets on 127.0.0.1.

- ``FakeProviders``: one aiohttp app answering like Twilio (Messages.json, Calls.json, basic auth)
  and ntfy (``POST /{topic}``). Every accepted request is recorded (with the sid Twilio answered);
  ``script(target, ...)`` queues scripted answers (status, headers, a hang, a slow drip or an
  enormous body) for the next requests to that number or topic. Its status callbacks are
  tests/support/twilio_receipts.py's.
  The same server answers as the chat platforms do (``CHAT_PATHS``: a Slack, Discord or Teams
  webhook, a WEBHOOK receiver, Matrix's send and Telegram's sendMessage), recorded with the JSON
  body as sent, its kind the channel's and its target the webhook path, room or chat id.
- ``TwilioInbound``: the same stand-in's other direction, a text that came in to our Twilio
  number, posted to Monoduty's ``POST /twilio/sms`` as Twilio posts it (form-encoded, signed with
  ``X-Twilio-Signature`` by engine.channels.twilio_signature); ``twiml_message`` reads the answer.
- ``SmtpServer``: an aiosmtpd server (plain, STARTTLS or implicit TLS, AUTH PLAIN/LOGIN) recording
  each message as an ``EmailMessage`` and answering it with a queue id, as Postfix does;
  ``refuse(address, reply)`` answers RCPT with e.g. 550 or 451.

The fixtures that run them (``fake_providers``, ``smtp_server``, ``provider_settings``, ``live``) are in
tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal
from xml.etree import ElementTree

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

from engine.channels import twilio_signature
from tests.support.processes import free_port

TWILIO_SID = "AC" + "5f0c2a9e" * 4
TWILIO_TOKEN = "twilio-token-3b9e51d07c"
NTFY_TOKEN = "tk_ntfytoken8c2e71aa05"
SMTP_USERNAME = "monoduty"
SMTP_PASSWORD = "smtp-password-93ab1f"


Kind = Literal["sms", "call", "push", "slack", "discord", "teams", "webhook", "matrix", "telegram"]
# Where each chat platform's stand-in listens on FakeProviders' server (a target is url + path).
CHAT_PATHS = {
    "slack": "/slack/services/T0001/B0001/",
    "discord": "/discord/api/webhooks/1180000000000000001/",
    "teams": "/teams/workflows/",
    "webhook": "/receiver/",
}
MATRIX_TOKEN = "syt_matrix_token_5e1c0a"
TELEGRAM_TOKEN = "123456:telegram-token-9f0e"


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a status (with JSON body and headers), a hang past any timeout, or a delay."""

    status: int = 200
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0
    drip: float = 0.0  # seconds between the answer's bytes, one at a time (a slow drip), for ever
    size: int = 0  # bytes of the answer's body, streamed (an enormous answer)


@dataclass(frozen=True)
class Request:
    """One request a fake provider accepted (authenticated)."""

    kind: Kind
    target: str  # the To number, the ntfy topic, the chat webhook's path, room or chat id
    form: dict[str, str]  # Twilio's form fields; empty for ntfy
    headers: dict[str, str]
    body: str
    sid: str | None = None  # the id answered for it: Twilio's sid, ntfy's message id (None: it failed)
    at: float = field(default_factory=time.time)  # when it arrived (epoch s): accept-to-send figures


class FakeProviders:
    """Twilio and ntfy on one local server; ``url`` is the base URL for both."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Request] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._release = asyncio.Event()
        self.delay = 0.0  # seconds every unscripted answer takes (a slow provider)
        self.in_flight = 0  # requests being answered right now (held by a hang or a delay)
        self.streamed = 0  # bytes written by drips and enormous answers

    def script(self, target: str, *replies: Reply) -> None:
        """Answer the next requests to ``target`` with ``replies`` in order, then succeed again."""
        self._scripts.setdefault(target, deque()).extend(replies)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/{resource:Messages|Calls}.json", self._twilio)
        app.router.add_post("/{topic}", self._ntfy)
        for kind, path in CHAT_PATHS.items():
            app.router.add_post(path + "{hook}", self._chat(kind))
        app.router.add_put("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", self._matrix)
        app.router.add_post("/bot{token}/sendMessage", self._telegram)
        return app

    def _chat(self, kind: Kind) -> Any:
        answers: dict[str, tuple[int, Any]] = {
            "slack": (200, "ok"),
            "discord": (200, {"id": "1190000000000000001", "channel_id": "1"}),
            "teams": (202, None),
            "webhook": (200, {"ok": True}),
        }

        async def handle(request: web.Request) -> web.Response:
            body = await request.text()
            self.requests.append(Request(kind, request.match_info["hook"], {}, dict(request.headers), body))
            status, answer = answers[kind]
            if isinstance(answer, str):
                return web.Response(text=answer, status=status)
            return web.json_response(answer, status=status) if answer else web.Response(status=status)

        return handle

    async def _matrix(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {MATRIX_TOKEN}":
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"}, status=401)
        body = await request.text()
        self.requests.append(Request("matrix", request.match_info["room"], {}, dict(request.headers), body))
        return web.json_response({"event_id": "$" + request.match_info["txn"]})

    async def _telegram(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = await request.text()
        chat_id = str((await request.json()).get("chat_id"))
        self.requests.append(Request("telegram", chat_id, {}, dict(request.headers), body))
        return web.json_response({"ok": True, "result": {"message_id": len(self.requests)}})

    def release(self) -> None:
        """Let hanging handlers finish, so the server can shut down at once."""
        self._release.set()

    def hold_again(self) -> None:
        """After ``release``: scripted hangs hang again (a fault test's next round)."""
        self._release = asyncio.Event()

    async def _twilio(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if request.match_info["sid"] != TWILIO_SID or request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        form = {k: str(v) for k, v in (await request.post()).items()}
        kind: Literal["sms", "call"] = "sms" if request.match_info["resource"] == "Messages" else "call"
        prefix = "SM" if kind == "sms" else "CA"
        ok = {"sid": prefix + uuid.uuid4().hex, "status": "queued", "to": form.get("To")}
        return await self._answer(request, kind, form.get("To", ""), form, "", ok, status=201)

    async def _ntfy(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        if auth is not None and auth != f"Bearer {NTFY_TOKEN}":
            return web.json_response({"code": 40101, "http": 401, "error": "unauthorized"}, status=401)
        topic, body = request.match_info["topic"], await request.text()
        ok = {"id": uuid.uuid4().hex[:12], "event": "message", "topic": topic, "message": body}
        return await self._answer(request, "push", topic, {}, body, ok, status=200)

    async def _answer(
        self,
        request: web.Request,
        kind: Kind,
        target: str,
        form: dict[str, str],
        body: str,
        ok: dict[str, Any],
        status: int,
    ) -> web.Response:
        queue = self._scripts.get(target)
        reply = queue.popleft() if queue else Reply(status=status, delay=self.delay)
        sid = (ok.get("sid") or ok.get("id")) if reply.status < 300 and reply.json is None else None
        self.requests.append(Request(kind, target, form, dict(request.headers), body, sid))
        self.in_flight += 1
        try:
            if reply.hang:
                await self._release.wait()
            if reply.delay:
                await asyncio.sleep(reply.delay)  # a provider that takes its time, not a test wait
        finally:
            self.in_flight -= 1
        default = ok if reply.status < 300 else {"code": reply.status * 100, "message": "scripted failure"}
        if reply.drip or reply.size:
            return await self._stream(request, reply)
        return web.json_response(reply.json or default, status=reply.status, headers=reply.headers)

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        """A drip or an enormous answer: written until the client hangs up (or a bound: 10,000
        drops, ``size`` bytes); ``streamed`` counts the bytes written."""
        response = web.StreamResponse(status=reply.status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b" " * (1 if reply.drip else 64 * 1024)
        self.in_flight += 1
        try:
            for _ in range(10_000 if reply.drip else -(-reply.size // len(chunk))):
                await response.write(chunk)
                self.streamed += len(chunk)
                if reply.drip:
                    await asyncio.sleep(reply.drip)  # the drip's pace, not a test wait
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading and closed: what a bounded reader does
        finally:
            self.in_flight -= 1
        return response


class TwilioInbound:
    """Twilio's incoming-message webhook request: ``text(sender, body)`` posts what Twilio posts
    when ``sender`` texts our number, signed with ``auth_token`` over ``public_url`` + the path
    (unless ``signature`` is given: a forged one, or "" for none). Answers (status, body text)."""

    PATH = "/twilio/sms"

    def __init__(
        self,
        client: TestClient,
        *,
        public_url: str = "http://monoduty.test",
        to: str = "+15005550006",
        auth_token: str = TWILIO_TOKEN,
    ) -> None:
        self.client = client
        self.url = public_url.rstrip("/") + self.PATH
        self.to = to
        self.auth_token = auth_token

    async def text(self, sender: str, body: str, *, signature: str | None = None) -> tuple[int, str]:
        sid = "SM" + uuid.uuid4().hex
        form = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": self.to,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": TWILIO_SID,
            "From": sender,
            "ApiVersion": "2010-04-01",
        }
        signed = twilio_signature.signature(self.auth_token, self.url, form.items())
        headers = {twilio_signature.HEADER: signed if signature is None else signature}
        if signature == "":
            headers = {}
        resp = await self.client.post(self.PATH, data=form, headers=headers)
        return resp.status, await resp.text()


def twiml_message(body: str) -> str | None:
    """The text of a TwiML answer's ``<Message>``, or None for an empty ``<Response/>``."""
    root = ElementTree.fromstring(body)  # noqa: S314 - our own answer, in a test
    assert root.tag == "Response", body
    message = root.find("Message")
    return None if message is None else message.text


class _CountingSmtp(SMTP):
    """aiosmtpd's server side of one connection, telling its SmtpServer of the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS upgrade of one already counted
            self.event_handler._connected(transport)
        super().connection_made(transport)


class _RandomPortController(Controller):
    """aiosmtpd's Controller, bound to a free port the OS picks (it only knows fixed ports)."""

    def factory(self) -> SMTP:
        return _CountingSmtp(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """A real SMTP server in a thread; use as a context manager."""

    def __init__(self, tls: Literal["none", "starttls", "tls"] = "none", cert: ssl.SSLContext | None = None):
        self.host = "127.0.0.1"
        self.port = 0
        self.messages: list[EmailMessage] = []
        self.queue_ids: list[str] = []  # each message's, as the server answered it
        self.refusals: dict[str, str] = {}
        options: dict[str, Any] = {"authenticator": self._authenticate, "auth_require_tls": False}
        if tls == "starttls":
            options.update(tls_context=cert, require_starttls=True)
        elif tls == "tls":
            options["ssl_context"] = cert
        self.connections = 0  # connections the server accepted
        self.mail_commands = 0  # MAIL FROM commands it was sent: each one an attempt at an email
        self.quits = 0  # connections the client ended with QUIT
        self._open: list[asyncio.BaseTransport] = []
        self._mail_reply: str | None = None
        self._die_after_data = False
        self._controller = _RandomPortController(self, hostname=self.host, port=0, **options)

    def refuse(self, address: str, reply: str) -> None:
        """Answer RCPT TO for ``address`` with ``reply``, e.g. ``"550 5.1.1 No such user"``."""
        self.refusals[address] = reply

    def refuse_next_mail(self, reply: str) -> None:
        """Answer the next MAIL FROM with ``reply`` and, for a 421, close the connection after it
        (as a server does past its limit of messages per connection)."""
        self._mail_reply = reply

    def die_after_next_data(self) -> None:
        """Take the next email, then drop the connection before answering it."""
        self._die_after_data = True

    def drop_connections(self) -> None:
        """Close every open connection from the server's side (its idle timeout, a restart)."""
        done = threading.Event()

        def drop() -> None:
            for transport in self._open:
                transport.close()
            done.set()

        self._controller.loop.call_soon_threadsafe(drop)
        assert done.wait(5), "the SMTP server's loop did not run"

    def _connected(self, transport: asyncio.BaseTransport) -> None:
        self.connections += 1
        self._open.append(transport)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        self.port = self._controller.port
        self.connections = 0  # not the controller's own, made to check the server is up
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    # aiosmtpd handler hooks (they run in the server's thread; list.append is thread-safe)
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> Any:
        self.mail_commands += 1
        reply, self._mail_reply = self._mail_reply, None
        if reply is None:
            return MISSING  # aiosmtpd's own handling
        if reply.startswith("421"):
            asyncio.get_running_loop().call_soon(server.transport.close)  # once the reply is out
        return reply

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> Any:
        self.quits += 1
        return MISSING

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        self.messages.append(parsed)  # type: ignore[arg-type]
        queue_id = uuid.uuid4().hex[:10].upper()
        self.queue_ids.append(queue_id)
        if self._die_after_data:
            self._die_after_data = False
            server.transport.abort()  # taken, and the answer never leaves
        return f"250 2.0.0 Ok: queued as {queue_id}"  # as Postfix answers

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USERNAME.encode(),
            SMTP_PASSWORD.encode(),
        )
        # handled=False: aiosmtpd answers 535 itself. No auth_data: it logs the result's repr.
        return AuthResult(success=ok, handled=False)


def closed_port() -> int:
    """A local port nothing listens on (connections are refused)."""
    return free_port()
