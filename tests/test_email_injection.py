"""An alert's text cannot add headers to, or replace the body of, the email it becomes.

The email package decodes RFC 2047 encoded words in a header value it is given, and CPython
before 3.11.10/3.12.5 writes what they decode to, CR/LF included, as raw lines (CVE-2024-6923).
These tests post such alerts through the real pipeline to a real SMTP server and read what
arrived, so they hold on whichever Python runs them (3.11.7 here and in CI).
"""

from __future__ import annotations

import base64
import json
from email.message import EmailMessage

import pytest
from aiohttp.test_utils import TestClient

from engine.channels.base import DeliveryError
from engine.channels.email import EmailChannel
from engine.channels.formats import validate_email
from engine.settings import Settings
from tests.support.channels import alert, smtp_settings
from tests.support.factories import Account, assert_error, counts, run_worker, statistics
from tests.support.providers import SmtpServer


def encoded_word(text: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


# The issue's payload: "x\r\nX-Injected: yes" once decoded.
INJECT_HEADER = "x =?UTF-8?B?eA0KWC1JbmplY3RlZDogeWVz?="
# Ends the headers early and starts a body of the sender's choosing.
REPLACE_BODY = "Disk full " + encoded_word(
    "\r\nContent-Type: text/html\r\n\r\n<h1>Pay here</h1><a href=https://evil.test>now</a>\r\n"
)
TITLES = [
    INJECT_HEADER,
    REPLACE_BODY,
    "Réplica caída " + encoded_word("\r\nX-Injected: yes"),  # non-ASCII: the folder encodes it
    "long " * 30 + encoded_word("\r\nX-Injected: yes"),  # past 78 columns: the header is refolded
    "q-encoded =?utf-8?q?x=0D=0AX-Injected:_yes?=",
]
MAIL_WEBHOOK = {
    "name": "Mail",
    "notificationTypes": ["EMAIL"],
    "targetChannels": {"email": "oncall@example.com"},
}
OUR_HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "x-monoduty-alert-id",
    "x-monoduty-severity",
    "auto-submitted",
    "mime-version",
    "content-type",
}


def assert_ours(mail: EmailMessage, title: str) -> None:
    """Only our headers, our subject line, and our two-part body with the title shown as text."""
    assert {name.lower() for name in mail} == OUR_HEADERS
    assert "X-Injected" not in mail
    assert mail.get_content_type() == "multipart/alternative"
    subject = mail["Subject"]
    assert "\r" not in subject and "\n" not in subject and "Injected: yes" not in subject
    assert "=?" not in subject  # nothing left for a mail reader to decode either
    assert subject.startswith("[CRITICAL] #1 ") and subject.split()[2] == title.split()[0]
    parts = [part.get_content_type() for part in mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    html = mail.get_body(("html",)).get_content()
    assert "<h1>Pay here" not in html and "href=https://evil.test" not in html
    assert "primary unreachable" in mail.get_body(("plain",)).get_content()


@pytest.mark.parametrize("title", TITLES, ids=["header", "body", "non-ascii", "long", "q-encoding"])
async def test_an_alert_title_cannot_inject_into_the_email(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    smtp_server: SmtpServer,
    title: str,
) -> None:
    resp = await live.post("/api/webhooks", json=MAIL_WEBHOOK, headers=account.headers)
    assert resp.status == 201, await resp.text()
    created = (await resp.json())["webhook"]
    path = created["webhook_url"].removeprefix("http://monoduty.test")
    alert_body = {"title": title, "message": "primary unreachable", "severity": "critical"}
    assert (await live.post(path, json=alert_body)).status == 202

    await run_worker(provider_settings)

    [mail] = smtp_server.messages
    assert_ours(mail, title)
    assert mail["To"] == "oncall@example.com"
    assert await statistics(live, account, created) == counts(1, 1, 0)


async def test_the_issue_payload_reads_as_sent(smtp_server: SmtpServer) -> None:
    """The text stays readable: only the '=?' that would open an encoded word is broken up."""
    await EmailChannel(smtp_settings(smtp_server)).send(alert(title=INJECT_HEADER), "oncall@example.com")

    [mail] = smtp_server.messages
    assert mail["Subject"] == "[CRITICAL] x = ?UTF-8?B?eA0KWC1JbmplY3RlZDogeWVz?="
    assert "X-Injected" not in mail


# A valid-looking address whose local part decodes into another recipient in the To line.
ENCODED_ADDRESS = encoded_word("boss@corp.example>, <x") + "@example.com"


async def test_an_encoded_word_in_the_address_is_refused(smtp_server: SmtpServer) -> None:
    """At send time too, for an address stored before validate_email refused them."""
    target = ENCODED_ADDRESS
    with pytest.raises(DeliveryError) as caught:
        await EmailChannel(smtp_settings(smtp_server)).send(alert(), target)

    assert caught.value.permanent
    assert smtp_server.messages == []


def test_validate_email_refuses_an_encoded_word() -> None:
    with pytest.raises(ValueError) as caught:
        validate_email(ENCODED_ADDRESS, field="targetChannels.email")
    assert str(caught.value).startswith("targetChannels.email must not contain '=?'")
    assert validate_email("a=b?c@example.com") == "a=b?c@example.com"  # apart, '=' and '?' are fine


@pytest.mark.parametrize(
    ("targets", "field"),
    [
        (ENCODED_ADDRESS, "targetChannels.email"),
        (["ok@example.com", "x=?y@example.com"], "targetChannels.email[1]"),
    ],
    ids=["one", "in-a-list"],
)
async def test_a_webhook_target_with_an_encoded_word_is_a_400(
    client: TestClient, account: Account, targets: object, field: str
) -> None:
    body = {**MAIL_WEBHOOK, "targetChannels": {"email": targets}}
    refused = await client.post("/api/webhooks", json=body, headers=account.headers)
    assert refused.status == 400, await refused.text()
    error = await refused.json()
    assert_error(error, "VALIDATION_ERROR")
    assert error["error"].startswith(f"{field} must not contain '=?'")

    created = await client.post("/api/webhooks", json=MAIL_WEBHOOK, headers=account.headers)
    webhook = (await created.json())["webhook"]
    path = f"/api/webhooks/{webhook['id']}"
    patched = await client.patch(path, json={"targetChannels": {"email": targets}}, headers=account.headers)
    assert patched.status == 400, await patched.text()
    assert (await patched.json())["error"].startswith(f"{field} must not contain '=?'")
    listed = await (await client.get("/api/webhooks", headers=account.headers)).json()
    assert listed["total"] == 1  # the refused create made nothing
    kept = await (await client.get(path, headers=account.headers)).json()
    assert "=?" not in json.dumps(kept)  # and the refused PATCH changed nothing


async def test_a_profile_email_with_an_encoded_word_is_a_400(client: TestClient, account: Account) -> None:
    resp = await client.patch("/api/auth/me", json={"email": ENCODED_ADDRESS}, headers=account.headers)
    assert resp.status == 400, await resp.text()
    error = await resp.json()
    assert_error(error, "VALIDATION_ERROR")
    assert error["error"].startswith("email must not contain '=?'")
    me = await (await client.get("/api/auth/me", headers=account.headers)).json()
    assert me["user"]["email"] == account.user.email
