"""Email over SMTP (aiosmtplib): plain, STARTTLS or implicit TLS, with optional login.

A worker keeps its connections open for the next email (engine.channels.smtp_pool); elsewhere
(the API's verification codes, password resets) each email has a connection of its own.
"""

from __future__ import annotations

import functools
import html
import re
import secrets
import ssl
import sys
from datetime import UTC, datetime
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import aiosmtplib

from engine.channels.base import DeliveryError, Message, Receipt
from engine.channels.smtp_pool import SmtpConnections, client_options, failed_unsent, quit_quietly
from engine.settings import SmtpSettings

SNIPPET_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Everything str.splitlines() breaks on (C0/C1 controls, U+2028/U+2029), which the email package
# would refuse in a header value.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# What opens an RFC 2047 encoded word. Every decoder (the email package's parser when a header is
# set, mail readers when it arrives) needs it, so text without it cannot decode into anything.
_ENCODED_WORD_OPENER = "=?"
# What a Message-ID's left part may be here (a delivery's UUID): nothing that could end the header.
_MSGID_PART = re.compile(r"[0-9A-Za-z-]{1,64}")


class _HeaderClasses(HeaderRegistry):
    """The email package's header registry, making each header class once.

    Its own makes a new class (``type(...)``) for every header set or read: some 30 per email and
    the largest single cost of building one. The classes are the same, so the email is too."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made


# The email package's default policy (what EmailMessage() uses), with the registry above.
POLICY = policy.default.clone(header_factory=_HeaderClasses())


@functools.lru_cache(maxsize=1024)
def _header(name: str, value: str) -> BaseHeader:
    """A header whose value comes back email after email (the sender, a recipient, a severity),
    parsed once: header objects are immutable, and setting one skips the parsing."""
    return POLICY.header_store_parse(name, value)[1]


@functools.lru_cache(maxsize=16)
def _domain(from_addr: str) -> str:
    return parseaddr(from_addr)[1].rpartition("@")[2] or "monoduty.localhost"


def _boundary(*parts: str) -> str:
    """A MIME boundary as the email package makes one (``===============<19 digits>==``) and
    found in no part, as it checks; made here, its generator would compile a regular expression
    per email for that check. Its encodings never write a run of ``=`` (QP writes ``=3D``)."""
    while True:
        boundary = "=" * 15 + f"{secrets.randbelow(sys.maxsize):019d}=="
        if not any(boundary in part for part in parts):
            return boundary


class EmailChannel:
    """Sends one text + HTML email per alert to one address."""

    type = "EMAIL"

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        connections: SmtpConnections | None = None,
    ) -> None:
        """``tls_context`` overrides the system trust store (a private CA; tests use one);
        ``connections`` keeps connections for later sends (none kept by default)."""
        self.settings = settings
        self.tls_context = tls_context
        self.sender = parseaddr(settings.from_addr)[1] or settings.from_addr
        self.connections = connections or SmtpConnections(0)

    async def close(self) -> None:
        """QUIT the connections kept for later sends."""
        await self.connections.close()

    async def send(self, message: Message, target: str) -> Receipt:
        """Hand the email to the SMTP server; the receipt holds its Message-ID and the server's
        answer to the message (``250 2.0.0 Ok: queued as 4BDCB1F8A3``: its queue id, which its logs
        know the email by)."""
        try:
            email = compose(message, target, self.settings.from_addr)
        except ValueError:
            # The email package refuses header values it cannot represent (a newline in an address).
            raise DeliveryError("invalid email address", permanent=True) from None
        try:
            answer = await self._submit(email, target)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._classify(exc) from None
        # DATA is accepted with 250 alone (RFC 5321); aiosmtplib gives the text after the code.
        return Receipt(provider_id=email["Message-ID"], reply=f"250 {self._snippet(answer)}".rstrip())

    async def _submit(self, email: EmailMessage, target: str) -> str:
        """The server's answer to the email, on a kept connection or a new one. A kept connection
        that turns out dead or closing before DATA is replaced once: the server cannot have taken
        the email yet. From DATA on, a failure is the caller's (maybe sent: never sent again here)."""
        connection, kept = await self.connections.take(self.settings, self.tls_context)
        try:
            _, answer = await connection.send_message(email, sender=self.sender, recipients=[target])
        except (aiosmtplib.SMTPException, OSError) as exc:
            await quit_quietly(connection)
            if not (kept and failed_unsent(connection, exc)):
                raise
            connection = await self.connections.connect(self.settings, self.tls_context)
            try:
                _, answer = await connection.send_message(email, sender=self.sender, recipients=[target])
            except BaseException:
                await quit_quietly(connection)
                raise
        except BaseException:  # cancelled mid-send: the connection is in an unknown state
            connection.close()
            raise
        await self.connections.give_back(self.settings, connection)
        return answer

    def _classify(self, exc: Exception) -> DeliveryError:
        """5xx replies and refused recipients are final; 4xx replies and network trouble are not."""
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            refusal = exc.recipients[0]
            permanent = all(r.code >= 500 for r in exc.recipients)
            text = f"SMTP server refused the recipient: {refusal.code} {self._snippet(refusal.message)}"
            return DeliveryError(text.rstrip(), permanent=permanent)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            # Retrying a wrong password only hammers the server (and may lock the account).
            text = f"SMTP authentication failed ({exc.code}); check the SMTP username and password"
            return DeliveryError(text, permanent=exc.code >= 500)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            text = f"SMTP server answered {exc.code} {self._snippet(exc.message)}"
            return DeliveryError(text.rstrip(), permanent=500 <= exc.code < 600)
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            text = f"SMTP: no answer within {self.settings.timeout:g}s"
            return DeliveryError(text, permanent=False, maybe_sent=True)
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return DeliveryError("SMTP: the server closed the connection", permanent=False, maybe_sent=True)
        if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
            # aiosmtplib's own message repeats host and port; the OS reason is what helps.
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            reason = (cause.strerror if isinstance(cause, OSError) else None) or type(cause).__name__
            return DeliveryError(f"SMTP: cannot connect ({reason})", permanent=False)
        # What is left is the server lacking what the settings ask for (STARTTLS, AUTH, SMTPUTF8):
        # retrying cannot help, and sending without STARTTLS would expose the password.
        return DeliveryError(f"SMTP: {self._snippet(str(exc)) or type(exc).__name__}", permanent=True)

    def _snippet(self, text: str) -> str:
        if self.settings.password and len(self.settings.password) >= 4:
            text = text.replace(self.settings.password, "***")
        text = " ".join(_CONTROL.sub(" ", text).split())
        return text if len(text) <= SNIPPET_LENGTH else text[: SNIPPET_LENGTH - 1] + "…"


async def submit(
    settings: SmtpSettings, email: EmailMessage, to: str, *, tls_context: ssl.SSLContext | None = None
) -> str:
    """Hand one email for ``to`` to the configured SMTP server; its answer to the message. Raises
    what aiosmtplib raises (an alert's page classifies it; engine.auth.password_reset logs it)."""
    sender = parseaddr(settings.from_addr)[1] or settings.from_addr
    _, answer = await aiosmtplib.send(
        email,
        sender=sender,
        recipients=[to],
        **client_options(settings, tls_context),
    )
    return answer


def header_text(text: str) -> str:
    """Untrusted text made safe for a header: one line, and no RFC 2047 encoded word in it.

    Setting a header makes the email package decode the encoded words it finds, and CPython
    before 3.11.10/3.12.5 then writes what they decoded, CR/LF included, as raw header lines
    (CVE-2024-6923): ``=?UTF-8?B?eA0KWC1JbmplY3RlZDogeWVz?=`` becomes an ``X-Injected`` header,
    a longer one a whole new body. A space between ``=`` and ``?`` leaves the text readable and
    gives no decoder, ours or the reader's, anything to decode.
    """
    text = " ".join(_HEADER_BREAKS.sub(" ", text).split())
    return text.replace(_ENCODED_WORD_OPENER, "= ?")


def compose(message: Message, to: str, from_addr: str) -> EmailMessage:
    """The email for one alert: a plain-text part and an HTML alternative.

    Raises ValueError for a ``to`` the email package cannot write as given (the caller treats it
    as an invalid address).
    """
    if _ENCODED_WORD_OPENER in to:
        # An address cannot be rewritten like text, and the parser would decode an encoded word
        # in its local part (RFC 2047 forbids one there) into another To line: refuse it.
        raise ValueError("an encoded word in an address")
    email = EmailMessage(policy=POLICY)
    email["Subject"] = header_text(message.subject)
    email["From"] = _header("From", from_addr)
    email["To"] = _header("To", to)
    email["Date"] = datetime.now(UTC)  # written as format_datetime does, without parsing it back
    domain = _domain(from_addr)
    # The delivery's id where there is one, the same on every attempt: SMTP has no idempotency key,
    # but mail stores and readers (Gmail, Outlook, mutt) show one message per Message-ID, so a send
    # repeated after a worker died mid-send is not shown twice. An explicit domain: make_msgid would
    # otherwise ask DNS for this host's FQDN on every send.
    if message.delivery_id is not None and _MSGID_PART.fullmatch(message.delivery_id):
        email["Message-ID"] = f"<{message.delivery_id}@{domain}>"
    else:
        email["Message-ID"] = make_msgid(domain=domain)
    # Ours (a UUID, one of SEVERITIES), but they come back from the database: same rule.
    email["X-Monoduty-Alert-Id"] = header_text(message.alert_id)
    email["X-Monoduty-Severity"] = _header("X-Monoduty-Severity", header_text(message.severity))
    # RFC 3834: stops vacation responders from answering an alert (and looping with a ticket system).
    email["Auto-Submitted"] = _header("Auto-Submitted", "auto-generated")
    text, html_text = _text(message), _html(message)
    email.set_content(text)
    email.add_alternative(html_text, subtype="html")
    email.set_boundary(_boundary(text, html_text))
    return email


def _facts(message: Message) -> list[tuple[str, str]]:
    facts = [("Severity", message.severity), ("Webhook", message.webhook_name)]
    if message.number is not None:
        facts.append(("Incident", f"#{message.number}"))
    if message.source:
        facts.append(("Source", message.source))
    received = message.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [*facts, ("Received", received), ("Alert id", message.alert_id)]


# Said next to the links: a reader (and a mail scanner) opening one has not acted yet.
CONFIRM_NOTE = "Each link opens a page that asks you to confirm. Links expire after 24 hours."


def _text(message: Message) -> str:
    lines = [message.subject, ""]
    if message.actions is not None:
        actions = message.actions
        lines += [f"Acknowledge: {actions.acknowledge}", f"Resolve: {actions.resolve}", CONFIRM_NOTE, ""]
    lines += [message.body.strip(), ""]
    lines += [f"{name}: {value}" for name, value in _facts(message)]
    return "\n".join(lines) + "\n"


def _html(message: Message) -> str:
    # Everything in an alert comes from whoever knows the webhook URL: escape all of it.
    e = html.escape
    rows = "".join(
        f'<tr><th align="left" style="padding-right:1em">{e(name)}</th><td>{e(value)}</td></tr>'
        for name, value in _facts(message)
    )
    return (
        "<!DOCTYPE html><html><body>"
        f"<h2>{e(message.subject)}</h2>"
        f"{_html_actions(message)}"
        f'<pre style="white-space:pre-wrap;font-family:inherit">{e(message.body.strip())}</pre>'
        f"{_html_links(message)}"
        f"<table>{rows}</table>"
        "</body></html>\n"
    )


def _html_actions(message: Message) -> str:
    """Acknowledge and Resolve as links to the confirmation page (ours, escaped all the same)."""
    if message.actions is None:
        return ""
    e, actions = html.escape, message.actions
    return (
        f'<p><a href="{e(actions.acknowledge)}"><strong>Acknowledge</strong></a> &middot; '
        f'<a href="{e(actions.resolve)}"><strong>Resolve</strong></a></p>'
        f'<p style="color:#555;font-size:smaller">{e(CONFIRM_NOTE)}</p>'
    )


def _html_links(message: Message) -> str:
    """The sender's links as anchors (already http(s) and credential-free; escaped all the same)."""
    if not message.links:
        return ""
    items = "".join(f'<li><a href="{html.escape(url)}">{html.escape(url)}</a></li>' for url in message.links)
    return f"<p>Links:</p><ul>{items}</ul>"
