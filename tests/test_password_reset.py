"""Password reset by a one-time emailed link, over real SMTP to the tests' local server: the same
answer for an address nobody uses, a link that works once and ends the old sessions."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.auth import password_reset
from engine.settings import Settings
from tests.support.channels import smtp_settings
from tests.support.factories import make_client
from tests.support.processes import wait_until
from tests.support.providers import SmtpServer
from tests.support.sessions import web_user

LINK = re.compile(r"http://monoduty\.test(/reset-password/mdr_[A-Za-z0-9_-]{43})")
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def mailing(settings: Settings, smtp_server: SmtpServer, redis: ArqRedis) -> AsyncIterator[TestClient]:
    client = await make_client(settings.with_(smtp=smtp_settings(smtp_server)))
    try:
        yield client
    finally:
        await client.close()


def answer(page: str, email: str) -> str:
    """The page's words with the address it echoes taken out."""
    return page.replace(email, "ADDRESS")


async def test_a_reset_link_sets_a_new_password_once(
    mailing: TestClient, pool: asyncpg.Pool, redis: ArqRedis, smtp_server: SmtpServer
) -> None:
    who = await web_user(pool)
    signed_in = await mailing.post("/sign-in", data={"email": who.email, "password": who.password})
    assert signed_in.status == 200
    old_cookie = next(c.value for c in mailing.session.cookie_jar if c.key == "monoduty_session")
    mailing.session.cookie_jar.clear()
    sign_in = await (await mailing.get("/sign-in")).text()
    assert '<a href="/forgot-password">Forgot your password?</a>' in sign_in

    nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    unknown = await mailing.post("/forgot-password", data={"email": nobody})
    known = await mailing.post("/forgot-password", data={"email": who.email.upper()})
    assert unknown.status == known.status == 200
    assert answer(await unknown.text(), nobody) == answer(await known.text(), who.email.upper())
    assert "If an account uses" in await known.text()

    mail = await wait_until(lambda: smtp_server.messages, "the reset email")
    assert len(mail) == 1 and mail[0]["To"] == who.email  # none for the unknown address
    body = mail[0].get_body().get_content()  # type: ignore[union-attr]
    link = LINK.search(body)
    assert link, body
    token = link.group(1).rsplit("/", 1)[1]
    ttl = await redis.ttl(password_reset.KEY + hashlib.sha256(token.encode()).hexdigest())
    assert 0 < ttl <= 30 * 60

    # Asking again at once sends nothing more, with the same answer.
    again = await mailing.post("/forgot-password", data={"email": who.email})
    assert "If an account uses" in await again.text()

    form = await mailing.get(link.group(1))  # a mail scanner's GET spends nothing
    assert form.status == 200 and 'autocomplete="new-password"' in await form.text()
    short = await mailing.post(link.group(1), data={"password": "short"})
    assert short.status == 400 and 'id="password-error"' in await short.text()
    done = await mailing.post(link.group(1), data={"password": NEW_PASSWORD}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/sign-in?reason=password-set"
    assert "Your new password is set" in await (await mailing.get(done.headers["Location"])).text()

    # The old session is over; the old password no longer works, the new one does.
    mailing.session.cookie_jar.update_cookies({"monoduty_session": old_cookie})
    assert (await mailing.get("/", allow_redirects=False)).status == 303
    wrong = await mailing.post("/sign-in", data={"email": who.email, "password": who.password})
    assert wrong.status == 401
    right = await mailing.post(
        "/sign-in", data={"email": who.email, "password": NEW_PASSWORD}, allow_redirects=False
    )
    assert right.status == 303
    assert len(smtp_server.messages) == 1

    mailing.session.cookie_jar.clear()
    spent = await mailing.post(link.group(1), data={"password": "yet another passphrase"})
    assert spent.status == 400 and "used already or has expired" in await spent.text()
    assert (await mailing.get(link.group(1))).status == 400
    forged = await mailing.get("/reset-password/mdr_" + "A" * 43)
    assert forged.status == 400


async def test_without_email_there_is_no_reset(client: TestClient) -> None:
    assert "Forgot your password" not in await (await client.get("/sign-in")).text()
    assert (await client.get("/forgot-password")).status == 404
    assert (await client.post("/forgot-password", data={"email": "a@example.com"})).status == 404
