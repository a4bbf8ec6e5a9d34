"""Small no-script HTML pages behind links that carry their own token (an invite, an action link):
one layout, and the headers that keep a token-bearing page out of caches and Referer headers."""

from __future__ import annotations

from html import escape

from aiohttp import web

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><title>Monoduty: {title}</title></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 3rem auto">
<h1>{title}</h1>{body}</body></html>
"""
# The token is in the URL: keep the page out of caches and other sites' Referer headers.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    """The page titled ``title`` (escaped here) around ``body`` (HTML, escaped by the caller)."""
    text = LAYOUT.format(title=escape(title), body=body)
    return web.Response(text=text, status=status, content_type="text/html", headers=PRIVATE)
