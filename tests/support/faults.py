"""Things a fault test breaks on purpose: a Redis server it owns, a TCP proxy it can cut, worker processes.

- ``RedisServer``: ``/usr/bin/redis-server`` on a fixed port and data dir, so a test can kill it
  (SIGKILL, as a host crash would) and start it again where clients expect it, with or without AOF
  (``appendfsync always``, or ``everysec`` as production commonly runs).
- ``TcpProxy``: a local proxy to a real server; ``stop`` makes the server unreachable (connections
  cut, new ones refused) and ``start`` on the same port makes it reachable again; ``blackhole``
  makes it silent instead (connections hang, as behind a dropped route) until ``restore``;
  ``cut_before`` drops a connection as it sends given bytes (a Redis EXEC lost on the way).
- ``PostgresServer``: a PostgreSQL cluster of the test's own (initdb in a temporary folder, a free
  port), so a test can stop it at once (``immediate``, as a crash), restart it, end every backend of
  Monoduty's (``pg_terminate_backend``) and set its ``statement_timeout``, never touching the
  machine's server.
- ``WorkerProcess``: one real ``python -m monoduty worker``; its log goes to a file.
- ``RedisSentinel``: one ``/usr/bin/redis-sentinel`` watching a primary (a ``RedisServer``, whose
  replicas are ``RedisServer(..., replica_of=primary.port)``); ``url(service)`` is Monoduty's
  ``redis+sentinel://`` URL for a list of them.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import redis as redis_sync

from engine import db
from tests.support.processes import UNCAPPED, dies_with_us, free_port, monoduty_env, start_monoduty, wait_for

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_SENTINEL = "/usr/bin/redis-sentinel"
AppendFsync = Literal["always", "everysec"]
# The Debian packages' binaries (the newest major version installed).
PG_BIN = Path(
    max(glob.glob("/usr/lib/postgresql/*/bin/postgres") or ["/usr/lib/postgresql/bin/postgres"])
).parent
PG_USER = "postgres"  # the Debian package's system user: postgres refuses to run as root


class RedisServer:
    """A redis-server this test may kill and restart on the same port and data dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        aof: bool = False,
        fsync: AppendFsync = "always",
        replica_of: int | None = None,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.aof = aof
        self.fsync = fsync
        self.replica_of = replica_of  # the port of its primary on 127.0.0.1
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # appendfsync always by default: every accepted write is on disk, deterministically; everysec
        # (the common production setting) may lose the last second of writes even to a process crash.
        persistence = ["--appendonly", "no"]
        if self.aof:
            persistence = ["--appendonly", "yes", "--appendfsync", self.fsync]
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--dir", str(self.data_dir), *persistence]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=dies_with_us()
        )
        client = redis_sync.Redis.from_url(self.url)
        try:
            wait_for(lambda: self._answers(client), "redis-server to answer", timeout=10)
        finally:
            client.close()

    def _answers(self, client: redis_sync.Redis) -> bool:
        try:
            return bool(client.ping())
        except (redis_sync.ConnectionError, redis_sync.BusyLoadingError):
            assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save, as when the host dies."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class PostgresServer:
    """A PostgreSQL cluster of this test's own on 127.0.0.1 (trust auth), which it may stop and start.

    Its files live in a fresh folder under the system's temporary directory (the postgres system
    user must reach them when we are root); ``close`` stops it and removes them. ``fsync`` is off:
    the faults here are process crashes, whose writes the kernel still holds, not power cuts.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="monoduty-faults-pg-"))
        self.pgdata = self.folder / "pgdata"
        self.port = free_port()
        self.server_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, str] = {}
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER, PG_USER)
            self._as = {"user": PG_USER, "group": PG_USER}

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb the first time, then run postgres until it accepts connections."""
        if not (self.pgdata / "PG_VERSION").exists():
            initdb = [str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust"]
            initdb += ["-E", "UTF8", "--no-locale", "--no-instructions"]
            subprocess.run(initdb, check=True, capture_output=True, cwd=self.folder, **self._as)
        argv = [str(PG_BIN / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}"]
        argv += ["-c", "fsync=off", "-c", "max_connections=200"]
        with (self.folder / "postgres.log").open("ab") as log:
            # SIGQUIT: an immediate stop, whose backends exit with it (a SIGKILL would strand them).
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=dies_with_us(signal.SIGQUIT),
                **self._as,
            )  # type: ignore[call-overload]
        wait_for(self._ready, "postgres to accept connections", timeout=60)

    def _ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"postgres exited: {self.log()[-2000:]}"
        done = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        )
        return done.returncode == 0

    def log(self) -> str:
        return (self.folder / "postgres.log").read_text(errors="replace")

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop it: ``fast`` rolls back and checkpoints; ``immediate`` quits at once, as a crash
        would (recovery replays the WAL at the next start)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
            self.proc.wait(timeout=60)

    def restart(self) -> None:
        self.stop("fast")
        self.start()

    async def create_database(self, name: str = "monoduty") -> str:
        """A database with Monoduty's schema; its URL."""
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await db.migrate(self.url(name))
        return self.url(name)

    async def terminate_backends(self, database: str = "monoduty") -> int:
        """``pg_terminate_backend`` every connection to ``database`` (Monoduty's); how many."""
        conn = await asyncpg.connect(self.server_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database,
                )
            )
        finally:
            await conn.close()

    def close(self) -> None:
        self.stop("fast")
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisSentinel:
    """One redis-sentinel on 127.0.0.1 watching ``primary`` as service ``service``; it fails over
    ``down_after_ms`` after the primary stops answering (quorum: ``quorum`` sentinels agreeing)."""

    def __init__(
        self,
        data_dir: Path,
        primary: RedisServer,
        *,
        service: str,
        quorum: int = 1,
        down_after_ms: int = 1000,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.service = service
        self.primary_port = primary.port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "sentinel.conf"  # the sentinel rewrites it as it learns
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} 10000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        log = (self.data_dir / "sentinel.log").open("w")
        self.proc = subprocess.Popen(
            [REDIS_SENTINEL, str(config)], stdout=log, stderr=subprocess.STDOUT, preexec_fn=dies_with_us()
        )
        client = redis_sync.Redis(host="127.0.0.1", port=self.port)
        try:
            wait_for(lambda: self._knows_primary(client), "redis-sentinel to watch its primary", timeout=10)
        finally:
            client.close()

    def _knows_primary(self, client: redis_sync.Redis) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "redis-sentinel exited"
        try:
            return client.sentinel_get_master_addr_by_name(self.service) is not None
        except redis_sync.ConnectionError:
            return False

    def replicas_known(self) -> int:
        """How many replicas this sentinel knows, up and linked to the primary (failover needs one)."""
        client = redis_sync.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            replicas = client.sentinel_slaves(self.service)
        finally:
            client.close()
        return sum(
            1
            for r in replicas
            if not r.get("is_sdown") and not r.get("is_odown") and r.get("master-link-status") == "ok"
        )

    def primary(self) -> tuple[str, int] | None:
        """The (host, port) this sentinel names primary now."""
        client = redis_sync.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            address = client.sentinel_get_master_addr_by_name(self.service)
        finally:
            client.close()
        if not address:
            return None
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        return host, int(address[1])

    @staticmethod
    def url(sentinels: list[RedisSentinel], *, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        return f"redis+sentinel://{hosts}/{sentinels[0].service}/{db}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class TcpProxy:
    """A local TCP proxy to a real server; ``stop`` makes that server unreachable for real."""

    def __init__(self, host: str, port: int, *, unix_socket: str | None = None) -> None:
        self.target = (host, port)
        self.unix_socket = unix_socket  # the real server's socket file, when it listens on one
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = asyncio.Event()
        self._open.set()
        # While set: a client write holding these bytes is not passed on and its connection is cut
        # (e.g. b"EXEC": a transaction lost on the way, its reply never comes).
        self.cut_before: bytes | None = None

    @classmethod
    def to_database(cls, database_url: str) -> TcpProxy:
        """A proxy to the PostgreSQL of ``database_url``: over TCP, or to its unix socket (the
        embedded server's ``?host=/dir`` form), so the proxied URL is plain TCP either way."""
        parts = urlsplit(database_url)
        port = parts.port or 5432
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        if parts.hostname is None and socket_dir:
            return cls("127.0.0.1", port, unix_socket=f"{socket_dir}/.s.PGSQL.{port}")
        return cls(parts.hostname or "127.0.0.1", port)

    async def start(self) -> None:
        """Listen (again, on the same port after ``stop``)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, server_url: str) -> str:
        """``server_url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(server_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    def blackhole(self) -> None:
        """Cut the open connections; new ones are accepted and never answered (a dropped route)."""
        self._open.clear()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        """Answer again: new connections reach the server (held ones are closed)."""
        self._open.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open.is_set():
            await self._open.wait()
            writer.close()
            return
        try:
            if self.unix_socket:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_socket)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream and self.cut_before and self.cut_before in data:
                    break  # closing the server's side ends the other direction too
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()


class WorkerProcess:
    """One real ``python -m monoduty worker``; stdout and stderr go to ``log``."""

    def __init__(self, log: Path, **env: str) -> None:
        self.log = log
        defaults = {"MONODUTY_WORKER_POLL_DELAY": "0.01", "MONODUTY_LOG_FORMAT": "json", **UNCAPPED}
        self.proc = start_monoduty("worker", env=monoduty_env(**{**defaults, **env}), log=log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)
