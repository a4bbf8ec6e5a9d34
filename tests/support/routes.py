"""The routes the app serves, as (method, path pattern) pairs, for the tests that check every
route is covered (tests/test_openapi.py against the spec, tests/test_isolation.py against its table).
"""

from __future__ import annotations

import re

from api.app import create_app
from engine.settings import Settings


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="postgresql://unused", redis_url="redis://unused", dev=True))
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical if route.resource else ""
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # drop aiohttp's regex part
        routes.add((route.method.lower(), path))
    return routes
