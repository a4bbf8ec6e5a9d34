"""The dev-mode outbox (engine/channels/outbox.py) stands in for every channel: the registry
needs to be told how to make it. What it records is checked end to end in tests/test_inbound.py
and tests/test_cli.py (`monoduty outbox`).
"""

from __future__ import annotations

import aiohttp
import pytest

from engine.channels.registry import build_channels
from engine.settings import Settings


async def test_outbox_mode_needs_a_factory(http_session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="outbox_factory"):
        build_channels(Settings(dev=True), http_session)
