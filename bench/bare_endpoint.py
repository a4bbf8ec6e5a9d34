"""The suite's ingest baseline: a bare aiohttp server that parses the same JSON and answers 202.

No token lookup, no Redis, no logging: what any aiohttp JSON endpoint costs on this machine, on the
event loop `monoduty api` runs (``--loop``), so that the ingest ratio measures Monoduty's own work.

    python -m bench.bare_endpoint --port PORT [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    body: Any = await request.json()
    if not isinstance(body, dict):
        return web.json_response({"success": False}, status=400)
    return web.json_response({"success": True, "alert_id": str(uuid.uuid4()), "status": "queued"}, status=202)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{token}", receive)
    app.router.add_post("/hooks/{token}", receive)
    loop = asyncio.new_event_loop()
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
