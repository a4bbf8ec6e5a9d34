"""The routes the app serves, as (method, path pattern) pairs, for the tests that check every
route is covered (tests/test_openapi.py against the spec, tests/test_isolation.py against its table).

The dashboard's pages (routes named ``dashboard.*``) are left out: they are HTML for people, not
part of the API api/openapi.yaml describes, and tests/test_dashboard.py walks them itself (a
stranger is sent to sign-in, another team's incident or webhook is not found).
"""

from __future__ import annotations

import re

from api.app import create_app
from api.dashboard.guard import ROUTE_PREFIX
from engine.settings import Settings


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="postgresql://unused", redis_url="redis://unused", dev=True))
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or (route.name or "").startswith(ROUTE_PREFIX):
            continue
        path = route.resource.canonical if route.resource else ""
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # drop aiohttp's regex part
        routes.add((route.method.lower(), path))
    return routes
