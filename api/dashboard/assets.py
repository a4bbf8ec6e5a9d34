"""The dashboard's static files, served under content-hashed names with a year-long cache.

``app.css`` is served as ``/static/app.<hash>.css``: a changed file gets a new name, so a browser
may keep every name forever (``immutable``) and still never runs a stale script. The files are
read once at start-up; only those in ``SERVED`` are served (the vendored axe-core is for the
tests). A name that is not current (an old hash, no hash) is a 404.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
SERVED = (
    "app.css",
    "app.js",
    "timezone.js",
    "oncall.css",
    "vendor/htmx.min.js",
    "vendor/htmx-ext-sse.min.js",
)
TYPES = {".css": "text/css", ".js": "text/javascript"}
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    url: str
    body: bytes
    content_type: str


def _hashed(path: Path, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:12]
    stem, _, suffix = path.name.rpartition(".")
    return f"{stem}.{digest}.{suffix}"


class Assets:
    """Name under static/ -> its hashed URL, and hashed name -> its bytes."""

    def __init__(self, folder: Path = STATIC, names: tuple[str, ...] = SERVED) -> None:
        self._by_name: dict[str, Asset] = {}
        self._by_hashed: dict[str, Asset] = {}
        for name in names:
            path = folder / name
            body = path.read_bytes()
            hashed = _hashed(path, body)
            asset = Asset(f"/static/{hashed}", body, TYPES[path.suffix])
            self._by_name[name] = asset
            self._by_hashed[hashed] = asset

    def url(self, name: str) -> str:
        """The URL a page links ``name`` (a path under static/) by."""
        return self._by_name[name].url

    def response(self, hashed: str) -> web.Response:
        asset = self._by_hashed.get(hashed)
        if asset is None:
            raise web.HTTPNotFound(text="no such file")
        return web.Response(
            body=asset.body,
            content_type=asset.content_type,
            charset="utf-8",
            headers={"Cache-Control": CACHE_FOREVER},
        )


ASSETS = web.AppKey("dashboard_assets", Assets)
