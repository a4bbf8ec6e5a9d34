"""What the request log line and metrics cost per request (api.observability.observe_middleware).

Two measurements, both in this process with no database: the middleware called directly around a
trivial handler (its own cost: timing, route name, two metric updates, one JSON log line written
to /dev/null), and full HTTP round trips on a keep-alive connection with and without it (the
cost as a client sees it, within the noise of the HTTP stack).

    python -m bench.middleware_overhead [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from api.middlewares import error_middleware, request_id_middleware
from api.observability import METRICS_BUFFER, observe_middleware
from api.responses import ok
from engine.observability import logs
from engine.observability.metrics import MetricsBuffer


async def thing(request: web.Request) -> web.Response:
    return ok(thing={"id": request.match_info["id"]})


def build(observed: bool) -> web.Application:
    middlewares = [request_id_middleware, error_middleware]
    if observed:
        middlewares.insert(1, observe_middleware)
    app = web.Application(middlewares=middlewares)
    app[METRICS_BUFFER] = MetricsBuffer()
    app.router.add_get("/api/things/{id}", thing)
    return app


async def direct(n: int) -> tuple[float, float]:
    """Microseconds per call: the handler alone, and inside observe_middleware, on a real request."""
    timings: list[float] = []

    async def measure(request: web.Request) -> web.Response:
        for wrapped in (False, True):
            started = time.perf_counter()
            for _ in range(n):
                if wrapped:
                    await observe_middleware(request, thing)
                else:
                    await thing(request)
            timings.append((time.perf_counter() - started) / n * 1e6)
        return ok()

    app = build(False)
    app.router.add_get("/measure/{id}", measure)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    try:
        async with aiohttp.ClientSession() as session, session.get(server.make_url("/measure/42")) as resp:
            assert resp.status == 200
    finally:
        await server.close()
    return timings[0], timings[1]


async def over_http(n: int, observed: bool) -> float:
    """Median microseconds per GET over one keep-alive connection."""
    server = TestServer(build(observed), host="127.0.0.1")
    await server.start_server(access_log=None)
    samples = []
    try:
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("/api/things/42"))
            for _ in range(n):
                started = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                samples.append((time.perf_counter() - started) * 1e6)
    finally:
        await server.close()
    return statistics.median(samples)


async def main(n: int) -> None:
    with open("/dev/null", "w") as sink:  # noqa: ASYNC230 - set up once, before timing
        logs.configure("json", "INFO", sink)
        bare, wrapped = await direct(n)
        print(
            f"direct: handler {bare:.1f} µs, with observe_middleware {wrapped:.1f} µs "
            f"(+{wrapped - bare:.1f} µs per request)"
        )
        rounds = {False: [], True: []}
        for _ in range(3):  # interleaved, so drift in machine load hits both alike
            for observed in (False, True):
                rounds[observed].append(await over_http(n, observed))
        without, with_ = min(rounds[False]), min(rounds[True])
        print(
            f"HTTP round trip (median, best of 3): {without:.0f} µs without, {with_:.0f} µs with "
            f"(+{with_ - without:.0f} µs)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
