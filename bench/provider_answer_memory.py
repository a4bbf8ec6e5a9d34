"""Peak memory of a process sending one push whose provider answers with a huge body.

Run: bench/run provider_answer_memory [--mib 200]
The main process serves ntfy's `POST /{topic}` answering a body of MIB mebibytes (streamed, so the
server holds none of it) for statuses 200 and 500; a child process sends one push through the real
PushChannel and engine.channels.http and reports its resident memory before and its peak after. Needs no
database or Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

CHUNK = b"x" * (1 << 20)


def memory_mb(field: str) -> float:
    """A /proc/self/status figure (VmRSS now, VmHWM the peak) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1000
    raise RuntimeError(f"no {field} in /proc/self/status")


async def client(url: str) -> None:
    from engine.channels.base import DeliveryError, Message
    from engine.channels.push import PushChannel
    from engine.settings import NtfySettings

    message = Message(
        str(uuid.uuid4()), "bench", "DB down", "primary unreachable", "critical", None, datetime.now(UTC)
    )
    async with aiohttp.ClientSession() as session:
        channel = PushChannel(NtfySettings(url), session, timeout=120)
        before = memory_mb("VmRSS")
        try:
            outcome = f"delivered ({await channel.send(message, 'bench-topic')})"
        except DeliveryError as exc:
            outcome = f"{'permanent' if exc.permanent else 'transient'}: {str(exc)[:60]}"
    print(f"{before:.0f} {memory_mb('VmHWM'):.0f} {outcome}")


async def serve(mib: int) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=int(request.match_info["status"]))
        response.content_length = mib * len(CHUNK)
        await response.prepare(request)
        try:
            for _ in range(mib):
                await response.write(CHUNK)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client stopped reading: what a capped read does
        return response

    app = web.Application()
    app.router.add_post("/{status}/{topic}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"provider answering {mib} MiB bodies; peak RSS of the sending process:")
    print(f"{'status':>6} {'before':>8} {'peak':>8}  outcome")
    for status in (200, 500):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.provider_answer_memory",
            "--client",
            f"http://127.0.0.1:{port}/{status}",
            stdout=subprocess.PIPE,
        )
        out, _ = await child.communicate()
        before, peak, outcome = out.decode().strip().split(" ", 2)
        print(f"{status:>6} {before:>5} MB {peak:>5} MB  {outcome}")
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(client(args.client) if args.client else serve(args.mib))


if __name__ == "__main__":
    main()
