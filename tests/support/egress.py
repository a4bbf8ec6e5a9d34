"""The outbound session as the worker builds it (engine.channels.egress), made safe to test.

- ``FixedResolver``: DNS answers chosen by the test (``{"internal.example": ["10.1.2.3"]}``); a
  name it does not know fails as an unknown host. No lookup ever leaves the machine.
- ``LoopbackOnlyConnector``: aiohttp's connector, except that an attempt to open a connection to
  any address but 127.0.0.1 / ::1 raises ``OffLoopback`` (an AssertionError, which no channel
  catches) instead of connecting: should the guard ever let a private address through, the test
  fails, and no packet leaves loopback.
- ``guarded_session(settings, answers)``: ``egress.client_session`` with both.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from engine.channels import egress
from engine.settings import Settings


class OffLoopback(AssertionError):
    """A connection to an address off loopback was attempted."""


class FixedResolver(AbstractResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        return None


class LoopbackOnlyConnector(aiohttp.TCPConnector):
    attempts: list[str] = []  # every address a connection was attempted to, across instances

    async def _wrap_create_connection(self, *args: Any, addr_infos: list[Any], **kwargs: Any) -> Any:
        for info in addr_infos:
            address = str(info[4][0])
            LoopbackOnlyConnector.attempts.append(address)
            if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
                raise OffLoopback(f"a connection to {address} was attempted")
        return await super()._wrap_create_connection(*args, addr_infos=addr_infos, **kwargs)


def guarded_session(settings: Settings, answers: dict[str, list[str]] | None = None) -> aiohttp.ClientSession:
    """The worker's session, resolving with ``answers`` and connecting only on loopback."""
    return egress.client_session(
        settings, resolver=FixedResolver(answers or {}), connector=LoopbackOnlyConnector
    )
