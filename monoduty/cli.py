"""The ``monoduty`` command: the composition root that wires settings, engine, api and workers."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

import asyncpg

from engine import db
from engine.observability import logs
from engine.settings import Settings
from monoduty import incidents_cli, loops, queue_cli
from monoduty.config import DEFAULT_DATA_DIR, load_settings


def _require(settings: Settings, *, redis: bool = True) -> Settings:
    """Exit with a clear message unless the URLs this command needs are known."""
    needed = [("MONODUTY_DATABASE_URL", settings.database_url)]
    if redis:
        needed.append(("MONODUTY_REDIS_URL", settings.redis_url))
    missing = [name for name, value in needed if not value]
    if missing:
        names = " and ".join(missing)
        sys.exit(f"monoduty: set {names}, or start `monoduty dev` (its embedded services are used)")
    return settings


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _require(load_settings(), redis=False)
    assert settings.database_url
    started = time.monotonic()

    def progress(step: str) -> None:
        # Steps go to stderr (stdout keeps the one result line scripts read), each with its time.
        print(f"migrate [{time.monotonic() - started:5.1f}s] {step}", file=sys.stderr, flush=True)

    asyncio.run(db.migrate(settings.session_database_url or settings.database_url, progress=progress))
    print("schema applied")


def cmd_api(args: argparse.Namespace) -> None:
    from api.app import create_app
    from api.server import run_app

    settings = _require(load_settings())
    logs.configure(settings.log_format, settings.log_level)
    loops.install()
    if settings.secret_key is None:
        logging.getLogger("monoduty.api").warning(
            "MONODUTY_SECRET_KEY is not set: calendar feeds (/ical/...) are off until it is"
        )
    ssl_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            sys.exit("monoduty: --tls-cert and --tls-key go together")
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            sys.exit(f"monoduty: cannot load the TLS certificate or key: {exc}")
    # SIGTERM: stop listening, let requests in flight finish for up to the grace period.
    run_app(  # aiohttp's, answering what it refuses itself in the error format (api.server)
        create_app(settings),
        host=args.host,
        port=args.port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,  # api.observability logs requests by route pattern, never the raw path
        shutdown_timeout=settings.shutdown_grace,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from workers.worker import build_worker

    settings = _require(load_settings())
    logs.configure(settings.log_format, settings.log_level)
    if args.check:
        from workers.worker import check_health

        sys.exit(check_health(settings))
    loops.install()
    build_worker(settings).run()


def cmd_dev(args: argparse.Namespace) -> None:
    from monoduty.dev import run_dev

    run_dev(port=args.port, host=args.host, data_dir=args.data_dir)


async def _create_user(
    settings: Settings, email: str, phone: str | None, name: str | None, password: str | None = None
) -> dict[str, str]:
    from engine.auth.accounts import set_password
    from engine.auth.api_keys import create_api_key
    from engine.auth.users import create_user

    assert settings.database_url
    conn = await db.connect(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        async with conn.transaction():
            user = await create_user(conn, email, phone=phone, name=name)
            if password is not None:
                await set_password(conn, user.id, password)
            key, _ = await create_api_key(conn, user.id, "created by monoduty users create")
    finally:
        await conn.close()
    return {"id": str(user.id), "email": user.email, "api_key": key}


def cmd_users_create(args: argparse.Namespace) -> None:
    from engine.errors import MonodutyError

    settings = _require(load_settings(), redis=False)
    password = args.password
    if password is None and sys.stdin.isatty():
        password = _prompt_password()
    try:
        created = asyncio.run(_create_user(settings, args.email, args.phone, args.name, password or None))
    except MonodutyError as exc:
        sys.exit(f"monoduty: {exc.message}")
    if args.json:
        print(json.dumps(created))
    else:
        print(f"user {created['email']} created (id {created['id']})")
        print(f"API key (shown once, keep it safe): {created['api_key']}")


async def _invite(settings: Settings, team: str, email: str, role: str) -> dict[str, str | None]:
    from datetime import UTC, datetime

    from engine.teams import Role
    from engine.teams.members import find_team, invite_by_operator

    assert settings.database_url
    conn = await db.connect(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        team_id = await find_team(conn, team)
        added = await invite_by_operator(conn, team_id, email, Role(role), datetime.now(UTC))
    finally:
        await conn.close()
    base = settings.public_url or "http://localhost:8080"
    return {
        "team_id": str(team_id),
        "user_id": str(added.member["user_id"]),
        "email": added.member["email"],
        "role": added.member["role"],
        "invite_url": f"{base}/invite/{added.invite.token}" if added.invite else None,
        "expires_at": added.invite.expires_at.isoformat() if added.invite else None,
    }


def cmd_users_invite(args: argparse.Namespace) -> None:
    from engine.errors import MonodutyError

    settings = _require(load_settings(), redis=False)
    try:
        invited = asyncio.run(_invite(settings, args.team, args.email, args.role))
    except MonodutyError as exc:
        sys.exit(f"monoduty: {exc.message}")
    if args.json:
        print(json.dumps(invited))
        return
    print(f"{invited['email']} is {invited['role']} of team {invited['team_id']}")
    if invited["invite_url"]:
        print(f"set-password link (works once, until {invited['expires_at']}): {invited['invite_url']}")
    else:
        print("they already have a password: no link needed")


def _prompt_password() -> str:
    """Ask twice in a terminal; an empty answer makes a key-only user."""
    import getpass

    password = getpass.getpass("Password for web login (empty: API key only): ")
    if password and getpass.getpass("Again: ") != password:
        sys.exit("monoduty: the passwords differ")
    return password


async def _outbox(settings: Settings, limit: int) -> list[dict[str, object]]:
    from engine.channels.outbox import recent

    assert settings.database_url
    conn = await db.connect(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        return await recent(conn, limit)
    finally:
        await conn.close()


def cmd_outbox(args: argparse.Namespace) -> None:
    settings = _require(load_settings(), redis=False)
    entries = asyncio.run(_outbox(settings, args.limit))
    if args.json:
        print(json.dumps(entries, default=str))
        return
    if not entries:
        print("the outbox is empty")
    for e in reversed(entries):
        print(f"{e['created_at']:%Y-%m-%d %H:%M:%S}  {e['channel']:<10} -> {e['target']}")
        print(f"    {e['subject']}")
        # What the real message would have carried to act on it: open a link, confirm, done.
        actions = e.get("actions")
        if isinstance(actions, dict):
            print(f"    acknowledge: {actions['acknowledge']}")
            print(f"    resolve:     {actions['resolve']}")
        if e.get("reply"):
            print(f"    {e['reply']}")


def cmd_report(args: argparse.Namespace) -> None:
    from monoduty.report import run

    run(load_settings(), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monoduty", description="Self-hosted incident alerting.")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="API + one worker, embedded PostgreSQL and Redis when none is set")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument(
        "--data-dir",
        default=os.environ.get("MONODUTY_DATA_DIR", DEFAULT_DATA_DIR),
        help="embedded services' data (default $MONODUTY_DATA_DIR or .monoduty)",
    )
    dev.set_defaults(func=cmd_dev)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server binds all interfaces by default
    api.add_argument("--port", type=int, default=8080)
    api.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    api.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a delivery worker (run as many as you like)")
    worker.add_argument("--check", action="store_true", help="exit 0 if a worker is healthy, 1 if not")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply schema.sql (idempotent)")
    migrate.set_defaults(func=cmd_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user and print an API key once")
    create.add_argument("--email", required=True)
    create.add_argument("--phone")
    create.add_argument("--name")
    create.add_argument("--password", help="for web login; prompted for in a terminal when left out")
    create.add_argument("--json", action="store_true", help='print {"id", "email", "api_key"}')
    create.set_defaults(func=cmd_users_create)
    invite = users.add_parser("invite", help="add a user to a team; a new user gets a set-password link")
    invite.add_argument("--team", required=True, help="the team's id, or its name if only one team has it")
    invite.add_argument("--email", required=True)
    invite.add_argument("--role", choices=["owner", "admin", "responder", "viewer"], default="responder")
    invite.add_argument("--json", action="store_true", help="print the result (and the link) as JSON")
    invite.set_defaults(func=cmd_users_invite)

    outbox = sub.add_parser("outbox", help="what dev mode would have sent")
    outbox.add_argument("--json", action="store_true")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.set_defaults(func=cmd_outbox)
    queue_cli.add_parser(sub)
    incidents_cli.add_parser(sub)

    from monoduty.report import add_arguments as report_arguments

    report = sub.add_parser("report", help="a report, as POST /api/reports/generate makes it")
    report_arguments(report)
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except asyncpg.UndefinedTableError:
        sys.exit("monoduty: the database has no Monoduty tables yet; run `monoduty migrate` first")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # An operator wants the cause in one line, not a traceback; the message carries no secret
        # (connection errors name host and port, never the password of the URL).
        sys.exit(f"monoduty: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
