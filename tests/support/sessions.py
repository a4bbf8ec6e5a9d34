"""Helpers for tests that log in as a browser would: a user with a password, a cookie session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from aiohttp.test_utils import TestClient

from engine.auth.accounts import set_password
from engine.auth.users import User, create_user

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class WebUser:
    user: User
    password: str

    @property
    def email(self) -> str:
        return self.user.email


async def web_user(pool: asyncpg.Pool, password: str = PASSWORD) -> WebUser:
    async with pool.acquire() as conn:
        user = await create_user(conn, f"web-{uuid.uuid4().hex[:10]}@example.com", phone="+14155550111")
        await set_password(conn, user.id, password)
    return WebUser(user, password)


async def log_in(client: TestClient, who: WebUser) -> str:
    """Log the client's cookie jar in; returns the CSRF token."""
    resp = await client.post("/api/auth/login", json={"email": who.email, "password": who.password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf_token"]
