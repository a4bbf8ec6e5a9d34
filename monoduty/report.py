"""`monoduty report`: the reports of POST /api/reports/generate, from the command line.

For operators and cron jobs: it reads PostgreSQL directly (no API key, no Redis), writes the file
to --output or stdout, and shows progress on stderr once a report takes more than a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import IO

from engine import reports
from engine.errors import MonodutyError
from engine.settings import Settings

# A report that is done within this many seconds prints nothing on stderr.
QUIET_SECONDS = 1.0
# Each option -> the field of engine.reports.parse_request it gives.
OPTIONS = {"--type": "type", "--range": "date_range", "--format": "format"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", required=True, choices=reports.TYPES)
    parser.add_argument(
        "--range", dest="date_range", help='"YYYY-MM-DD to YYYY-MM-DD" (UTC); default last 7 days'
    )
    parser.add_argument("--format", default="json", choices=reports.FORMATS)
    parser.add_argument("--output", "-o", help="file to write (default: stdout)")
    parser.add_argument("--user", help="whose report, by email (default: the only user, if there is one)")
    parser.add_argument("--progress", action="store_true", help="always show progress on stderr")


class Progress:
    """A line on stderr saying what is happening, once the report has taken QUIET_SECONDS."""

    def __init__(self, stream: IO[str], *, always: bool) -> None:
        self.stream = stream
        self.after = 0.0 if always else QUIET_SECONDS
        self.started = time.monotonic()
        self.stage = "querying"
        self.written = 0
        self.shown = False

    def line(self) -> str:
        size = f", {self.written / 1_000_000:.1f} MB written" if self.written else ""
        return f"monoduty report: {self.stage}{size} ({time.monotonic() - self.started:.1f} s)"

    def show(self) -> None:
        if time.monotonic() - self.started >= self.after:
            end = "\r" if self.stream.isatty() else "\n"
            print(self.line(), end=end, file=self.stream, flush=True)
            self.shown = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.25 if self.stream.isatty() else 1.0)
            self.show()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Progress]:
        self.started = time.monotonic()  # the report's own time, not start-up and connecting
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            task.cancel()
            if self.shown or time.monotonic() - self.started >= self.after:
                self.stage = "done"
                print(self.line(), file=self.stream, flush=True)


async def generate(settings: Settings, args: argparse.Namespace, out: IO[bytes], progress: Progress) -> None:
    from api.inputs import wire_names
    from api.responses import dumps
    from engine import db
    from engine.auth.users import find_user
    from engine.reports import render_csv, render_pdf

    assert settings.database_url
    with wire_names(OPTIONS):  # an error names the option to fix: "--range is malformed: ..."
        wanted = reports.parse_request(
            type=args.type, date_range=args.date_range, format=args.format, max_days=settings.report_max_days
        )
    conn = await db.connect(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        user = await find_user(conn, args.user)
        if user is None:
            raise MonodutyError(
                f"no user with email {args.user}"
                if args.user
                else "there are several users: pass --user EMAIL"
            )
        async with progress.running():
            if wanted.format == "csv":
                progress.stage = "writing CSV"
                async with aclosing(render_csv.stream(conn, user.id, wanted)) as chunks:
                    async for chunk in chunks:
                        out.write(chunk)
                        progress.written += len(chunk)
                return
            report = await reports.build(conn, user.id, wanted)
            if wanted.format == "json":
                out.write(dumps(report).encode() + b"\n")
                return
            progress.stage = "drawing PDF"
            out.write(await asyncio.to_thread(render_pdf.render, report))
    finally:
        await conn.close()


def run(settings: Settings, args: argparse.Namespace) -> None:
    """Write the report, or exit non-zero with the reason on stderr."""
    if not settings.database_url:
        sys.exit(
            "monoduty: set MONODUTY_DATABASE_URL, or start `monoduty dev` (its embedded database is used)"
        )
    if args.format == "pdf" and not args.output and sys.stdout.isatty():
        sys.exit("monoduty: a PDF is not for a terminal; pass --output FILE")
    progress = Progress(sys.stderr, always=args.progress)
    target = Path(args.output) if args.output else None
    try:
        if target is not None:
            with target.open("wb") as out:
                asyncio.run(generate(settings, args, out, progress))
        else:
            asyncio.run(generate(settings, args, sys.stdout.buffer, progress))
            sys.stdout.buffer.flush()
    except MonodutyError as exc:
        if target is not None:
            target.unlink(missing_ok=True)  # no half-written or empty report left behind
        sys.exit(f"monoduty: {exc.message}")
