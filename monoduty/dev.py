"""`monoduty dev`: the API and one worker in one process, on embedded services when none is set."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import web

from api.app import create_app
from api.server import AppRunner
from engine import db, queue
from engine.auth import sessions
from engine.auth.api_keys import create_api_key
from engine.auth.users import create_user, find_user
from engine.observability import logs
from engine.settings import Settings, SettingsError
from workers.worker import build_worker

log = logging.getLogger("monoduty.dev")

FIRST_USER_EMAIL = "admin@monoduty.localhost"
# Where a running `monoduty dev` leaves its embedded services' URLs for other commands (0600).
SERVICES_FILE = "dev-services.json"
SECRET_KEY_FILE = "secret-key"  # noqa: S105 (a file name)
COUNT_USERS = "SELECT count(*) FROM users"


def run_dev(*, host: str, port: int, data_dir: str) -> None:
    try:
        settings = Settings.from_env(os.environ, dev=True)
    except SettingsError as exc:
        sys.exit(f"monoduty: configuration error: {exc}")
    logs.configure(settings.log_format, settings.log_level)
    with contextlib.ExitStack() as stack:
        settings = _with_embedded_services(settings, Path(data_dir), stack)
        settings = settings.with_(public_url=settings.public_url or f"http://{host}:{port}")
        settings = settings.with_(secret_key=settings.secret_key or dev_secret_key(Path(data_dir)))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, host, port))


def _with_embedded_services(settings: Settings, data_dir: Path, stack: contextlib.ExitStack) -> Settings:
    """Start an embedded PostgreSQL and/or Redis for whichever URL is not configured."""
    if settings.database_url and settings.redis_url:
        return settings
    from monoduty.embedded import EmbeddedPostgres, EmbeddedRedis

    data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.database_url:
        postgres = stack.enter_context(EmbeddedPostgres(data_dir))
        settings = settings.with_(database_url=postgres.start())
    if not settings.redis_url:
        redis = stack.enter_context(EmbeddedRedis(data_dir))
        settings = settings.with_(redis_url=redis.start())
    services = data_dir / SERVICES_FILE
    services.touch(mode=0o600)
    services.write_text(json.dumps({"database_url": settings.database_url, "redis_url": settings.redis_url}))
    stack.callback(services.unlink, missing_ok=True)
    print(f"embedded services under {data_dir.resolve()} (data survives a restart)", flush=True)
    return settings


def dev_secret_key(data_dir: Path) -> str:
    """The data folder's own secret key (made on first use, 0600), so that calendar feed URLs keep
    working across restarts of `monoduty dev`. Outside dev, MONODUTY_SECRET_KEY is the key."""
    path = data_dir / SECRET_KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(key + "\n")
        return key


def running_services(data_dir: str) -> dict[str, str]:
    """The service URLs of a `monoduty dev` running on this data folder ({} if none is)."""
    try:
        found = json.loads((Path(data_dir) / SERVICES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if k in ("database_url", "redis_url") and isinstance(v, str)}


async def _first_user(settings: Settings) -> None:
    """On an empty database, create a first user and print its API key (shown this once); at every
    start, a one-time link that signs the first user in to the dashboard."""
    assert settings.database_url and settings.redis_url
    conn = await db.connect(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        async with conn.transaction():
            if await conn.fetchval(COUNT_USERS):
                print("users exist already; `monoduty users create --email E` makes another key", flush=True)
                user = await find_user(conn, FIRST_USER_EMAIL)
            else:
                user = await create_user(conn, FIRST_USER_EMAIL, name="Admin")
                key, _ = await create_api_key(conn, user.id, "first key from monoduty dev")
                print(f"first user: {user.email}", flush=True)
                print(f"API key (shown once, keep it): {key}", flush=True)
    finally:
        await conn.close()
    if user is None:  # a database that did not start under `monoduty dev`
        return
    redis = await queue.connect(settings.redis_url)
    try:
        token = await sessions.create_login_link(redis, user.id)
    finally:
        await redis.aclose()
    link = f"{settings.public_url}/login/{token}"
    print(f"dashboard sign-in link for {user.email} (works once, for 15 minutes): {link}", flush=True)


async def _serve(settings: Settings, host: str, port: int) -> None:
    assert settings.database_url
    await db.migrate(settings.session_database_url or settings.database_url)
    await _first_user(settings)
    runner = AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    worker = build_worker(settings, handle_signals=False)
    worker_task = asyncio.create_task(worker.main())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Monoduty dev is running on {settings.public_url} (Ctrl+C stops it)", flush=True)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({worker_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if worker_task.done() and worker_task.exception():
        log.error("the worker stopped: %s", worker_task.exception())
    worker_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker_task
    await worker.close()
    await runner.cleanup()
    stopped.cancel()
