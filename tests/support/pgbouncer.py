"""``PgBouncer``: a real ``/usr/sbin/pgbouncer`` in transaction mode in front of the tests' PostgreSQL.

It runs as a child process with its own ini under the test's folder, on a free loopback port,
``auth_type = any`` (PostgreSQL here trusts loopback) and a small server pool, so that client
connections really share server connections and whatever needs a session of its own breaks.
``url`` is the DSN through it; ``stats()`` reads its admin console's SHOW STATS for the database
(what went through it).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.processes import dies_with_us, free_port, wait_for

PGBOUNCER = "/usr/sbin/pgbouncer"
PSQL = "/usr/bin/psql"


class PgBouncer:
    def __init__(self, folder: Path, database_url: str, *, pool_size: int = 3) -> None:
        parts = urlsplit(database_url)
        assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "a local PostgreSQL only"
        self.folder = folder
        self.port = free_port()
        self.database = parts.path.lstrip("/")
        self.user = parts.username or "postgres"
        host, port = parts.hostname, parts.port or 5432
        self.server = f"host={host} port={port} dbname={self.database} user={self.user}"
        self.pool_size = pool_size
        self.url = urlunsplit(parts._replace(netloc=f"{self.user}@127.0.0.1:{self.port}"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(
            f"[databases]\n{self.database} = {self.server}\n"
            "[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmax_client_conn = 500\n"
            f"admin_users = {self.user}\n"
        )
        ini.chmod(0o644)
        argv = [PGBOUNCER, str(ini)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            argv[1:1] = ["-u", pwd.getpwnam("nobody").pw_name]
            self.folder.chmod(0o755)
        log = (self.folder / "pgbouncer.log").open("w")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=dies_with_us())
        wait_for(self._listening, "pgbouncer to listen", timeout=15)

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        return "listening on 127.0.0.1" in self.log()

    def log(self) -> str:
        return (self.folder / "pgbouncer.log").read_text()

    def stats(self) -> dict[str, int]:
        """SHOW STATS of the admin console for this database (total_xact_count, total_query_count...).

        Through psql: the admin console speaks only the simple query protocol, asyncpg the extended.
        """
        argv = [PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-A", "-F", "\t"]
        out = subprocess.run(
            [*argv, "-c", "SHOW STATS", "pgbouncer"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.splitlines()
        header = out[0].split("\t")
        for line in out[1:]:
            row = dict(zip(header, line.split("\t"), strict=False))
            if row.get("database") == self.database:
                return {k: int(v) for k, v in row.items() if v.isdigit()}
        return {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
