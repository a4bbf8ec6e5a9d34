"""``monoduty queue``: what is in the Redis job queue, one job in detail, retry, purge.

Only Redis is needed (``MONODUTY_REDIS_URL``); the key layout is in engine/queue_inspect.py and
the README, for those who prefer ``redis-cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from engine import queue, queue_inspect
from engine.errors import MonodutyError
from engine.settings import Settings
from monoduty.config import load_settings

T = TypeVar("T")
COLUMNS = ("queued", "deferred", "in_progress", "completed", "failed")


def _settings() -> Settings:
    settings = load_settings()
    if not settings.redis_url:
        sys.exit("monoduty: set MONODUTY_REDIS_URL")
    return settings


def _run(settings: Settings, action: Callable[[ArqRedis], Awaitable[T]]) -> T:
    async def main() -> T:
        assert settings.redis_url
        # No retries: an operator's command says at once that Redis is away.
        redis = await queue.connect(settings.redis_url, retries=0)
        try:
            return await action(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(main())
    except MonodutyError as exc:
        sys.exit(f"monoduty: {exc.message}")
    except (RedisError, OSError) as exc:
        sys.exit(f"monoduty: cannot reach Redis ({type(exc).__name__})")


def format_summary(summary: dict[str, Any]) -> str:
    """The at-a-glance table ``monoduty queue`` prints."""
    rows: list[tuple[str, ...]] = [("function", "queued", "deferred", "in progress", "completed", "failed")]
    for name, counts in summary["functions"].items():
        rows.append((name, *(str(counts[c]) for c in COLUMNS)))
    rows.append(("total", *(str(summary["totals"][c]) for c in COLUMNS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    oldest = summary["oldest_queued_seconds"]
    lines.append("")
    lines.append(f"oldest queued job: {'none' if oldest is None else f'waiting {oldest:.1f} s'}")
    health = summary["health_check"] or "none (no worker recorded its health lately)"
    lines.append(f"workers alive: {summary['workers_alive']}   arq health check: {health}")
    return "\n".join(lines)


def cmd_summary(args: argparse.Namespace) -> None:
    settings = _settings()
    summary = _run(settings, lambda r: queue_inspect.summarize(r, settings.queue_name)).to_dict()
    print(json.dumps(summary) if args.json else format_summary(summary))


def cmd_show(args: argparse.Namespace) -> None:
    settings = _settings()
    detail = _run(settings, lambda r: queue_inspect.show(r, settings.queue_name, args.job_id))
    if args.json:
        print(json.dumps(detail))
        return
    for name, value in detail.items():
        text = value if isinstance(value, str) else json.dumps(value)
        print(f"{name + ':':<13} {text}")


def cmd_retry(args: argparse.Namespace) -> None:
    settings = _settings()
    function = _run(settings, lambda r: queue_inspect.retry(r, settings.queue_name, args.job_id))
    print(f"job {args.job_id} ({function}) is queued again")


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:  # no terminal to answer from: the safe answer
        return False


def cmd_purge(args: argparse.Namespace) -> None:
    settings = _settings()
    if not args.failed:
        sys.exit("monoduty: say what to purge: --failed")
    failed = _run(settings, queue_inspect.failed_jobs)
    if not failed:
        print("no failed jobs")
        return
    if not args.yes and not _confirm(f"delete the results of {len(failed)} failed jobs?"):
        sys.exit("monoduty: nothing deleted")
    deleted = _run(settings, lambda r: queue_inspect.purge(r, failed))
    print(f"deleted {deleted} failed jobs")


def add_parser(sub: Any) -> None:
    """Wire ``monoduty queue [--json] | show ID | retry ID | purge --failed [--yes]``."""
    parser = sub.add_parser("queue", help="look into the Redis job queue")
    parser.add_argument("--json", action="store_true", help="counts as JSON, for scripts")
    parser.set_defaults(func=cmd_summary)
    commands = parser.add_subparsers(dest="queue_command")

    show = commands.add_parser("show", help="one job: function, masked arguments, tries, result or error")
    show.add_argument("job_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    retry = commands.add_parser("retry", help="run a failed job again under the same id")
    retry.add_argument("job_id")
    retry.set_defaults(func=cmd_retry)

    purge = commands.add_parser("purge", help="delete the kept results of failed jobs")
    purge.add_argument("--failed", action="store_true", help="the failed jobs (required)")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=cmd_purge)
