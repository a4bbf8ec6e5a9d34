"""The deployment files: compose and supervisord run real `monoduty` commands, and supervisord works.

No Docker engine runs in CI, so the compose file is checked by loading it (and by a real compose
implementation where one is installed); supervisord is run for real against the test's services.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from arq.connections import ArqRedis

from monoduty.cli import build_parser
from tests.support.factories import Account
from tests.support.processes import ROOT, dies_with_us, monoduty_env, wait_until
from tests.support.providers import FakeProviders, closed_port
from tests.support.services import Services, database_named

COMPOSE = ROOT / "docker" / "docker-compose.yml"
SUPERVISORD_CONF = ROOT / "docker" / "supervisord.conf"


def parse_monoduty(argv: list[str]) -> argparse.Namespace:
    """Parse as `monoduty` would: an unknown sub-command or option fails the test."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"`monoduty {shlex.join(argv)}` is not a monoduty command") from None


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_only_real_monoduty_commands() -> None:
    services = compose()["services"]
    ran = []
    for service in services.values():
        if "build" in service:  # our image: its entrypoint is `monoduty`
            parse_monoduty(service["command"])
            ran.append(service["command"][0])
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "monoduty"]:
            parse_monoduty(test[2:])
    assert sorted(ran) == ["api", "migrate", "worker"]


def test_compose_stack_has_what_production_needs() -> None:
    services = compose()["services"]
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command and redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert redis_command[redis_command.index("--appendfsync") + 1] == "everysec"
    assert str(services["worker"]["deploy"]["replicas"]).endswith("3}") or services["worker"]["deploy"][
        "replicas"
    ] in (3, "3")
    for app in ("api", "worker"):
        depends = services[app]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        # Docker's SIGKILL comes after stop_grace_period: it must outlast the shutdown grace.
        grace = int(services[app]["environment"]["MONODUTY_SHUTDOWN_GRACE"])
        assert int(services[app]["stop_grace_period"].rstrip("s")) > grace
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any("mailpit" in s.get("image", "") for s in services.values())
    assert set(compose()["volumes"]) >= {"postgres-data", "redis-data"}


def test_compose_file_validates_with_a_real_compose() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("no compose implementation installed (apt-get install docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_is_one_non_root_image_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.M)) == 2  # build stage + slim runtime
    assert "slim" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, flags=re.M)
    assert re.search(r"^HEALTHCHECK ", dockerfile, flags=re.M)
    assert 'ENTRYPOINT ["monoduty"]' in dockerfile
    default = re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.M)
    assert default is not None
    parse_monoduty(yaml.safe_load(default.group(1)))


def supervisor_programs() -> dict[str, configparser.SectionProxy]:
    parser = configparser.RawConfigParser()
    parser.read(SUPERVISORD_CONF)
    return {s.removeprefix("program:"): parser[s] for s in parser.sections() if s.startswith("program:")}


def test_supervisord_runs_real_commands_and_outwaits_the_grace() -> None:
    programs = supervisor_programs()
    assert set(programs) == {"api", "worker"}
    for program in programs.values():
        argv = shlex.split(re.sub(r"%\(ENV_\w+\)s", "8080", program["command"]))
        assert argv[0] == "monoduty"
        parse_monoduty(argv[1:])
        assert program["stopsignal"] == "TERM"
        assert int(program["stopwaitsecs"]) > 25  # MONODUTY_SHUTDOWN_GRACE's default
        assert program["stdout_logfile"] == "/dev/stdout" and program["stdout_logfile_maxbytes"] == "0"
    assert programs["worker"]["numprocs"] == "%(ENV_MONODUTY_WORKERS)s"


async def test_supervisord_runs_the_api_and_workers_and_stops_them_gracefully(
    services: Services,
    redis: ArqRedis,
    account: Account,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> None:
    supervisord = Path(sys.executable).parent / "supervisord"
    if not supervisord.exists():
        pytest.skip("supervisor is not installed (pip install supervisor, in the test extra)")
    shim = tmp_path / "bin" / "monoduty"  # `monoduty` on PATH, as an installed package provides
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m monoduty "$@"\n')
    shim.chmod(0o755)
    port = closed_port()
    env = monoduty_env(
        PATH=f"{shim.parent}:{os.environ['PATH']}",
        MONODUTY_WORKERS="2",
        MONODUTY_API_PORT=str(port),
        MONODUTY_RUN_DIR=str(tmp_path),
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_NTFY_URL=fake_providers.url,
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        MONODUTY_SHUTDOWN_GRACE="10",
        MONODUTY_LOG_FORMAT="json",
    )
    conf = ["-c", str(SUPERVISORD_CONF)]
    process = await asyncio.create_subprocess_exec(
        str(supervisord),
        *conf,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=dies_with_us(signal.SIGTERM),  # it stops its programs; a SIGKILL would orphan them
    )
    output: list[str] = []

    async def collect() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            output.append(line.decode(errors="replace"))

    collector = asyncio.create_task(collect())

    async def supervisorctl(*args: str) -> tuple[int, str]:
        ctl = await asyncio.create_subprocess_exec(
            str(supervisord.parent / "supervisorctl"), *conf, *args, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await ctl.communicate()
        return ctl.returncode or 0, out.decode()

    try:

        async def all_running() -> bool:
            code, out = await supervisorctl("status")
            return code == 0 and out.count("RUNNING") == 3

        await wait_until(all_running, "the API and two workers to be RUNNING", timeout=60)
        _, status = await supervisorctl("status")
        assert {"api", "worker:worker-00", "worker:worker-01"} <= {
            line.split()[0] for line in status.splitlines()
        }

        # The processes supervisord runs do the real work: an alert in, a push out.
        api = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers=account.headers) as http:

            async def api_answers() -> bool:
                try:
                    async with http.get(f"{api}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(api_answers, "the API to answer", timeout=30)
            body = {
                "name": "supervised",
                "notificationTypes": ["PUSH_NOTIF"],
                "targetChannels": {"push": "sv"},
            }
            async with http.post(f"{api}/api/webhooks", json=body) as resp:
                assert resp.status == 201, await resp.text()
                webhook = (await resp.json())["webhook"]
            async with http.post(webhook["webhook_url"], json={"title": "supervised"}) as resp:
                assert resp.status == 202

            async def delivered() -> bool:
                async with http.get(f"{api}/api/webhooks/{webhook['id']}") as resp:
                    return (await resp.json())["webhook"]["statistics"]["successful_calls"] == 1

            await wait_until(delivered, "the alert to be delivered", timeout=30)
        assert [r.target for r in fake_providers.requests] == ["sv"]

        code, _ = await supervisorctl("shutdown")
        assert code == 0
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        await collector
    log = "".join(output)
    for name in ("api", "worker-00", "worker-01"):
        assert log.count(f"stopped: {name} (exit status 0)") == 1, log[-3000:]
    assert log.count("shutdown on SIGTERM, wait complete") == 2  # each worker took the graceful path


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_a_plain_pip_install_finds_its_schema_and_migrates(services: Services, tmp_path: Path) -> None:
    """`pip install .` (no source tree, as in the image) ships schema.sql where engine.db looks."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The dependencies come from the test's own environment; the project itself is installed.
    purelib = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (next((venv / "lib").glob("python3*")) / "site-packages" / "deps.pth").write_text(purelib + "\n")
    # From a copy: setuptools builds in the tree it installs, and the test must not leave build/
    # and an egg-info behind in the checkout.
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".monoduty"
    )
    shutil.copytree(ROOT, source, ignore=junk)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    conn = await asyncpg.connect(services.database_url)
    name = f"monoduty_pip_{os.getpid()}"
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        fresh = database_named(services.database_url, name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONODUTY_", "PYTHON"))}
        env |= {"MONODUTY_DATABASE_URL": fresh, "MONODUTY_REDIS_URL": services.redis_url}
        migrate = subprocess.run(
            [str(venv / "bin" / "monoduty"), "migrate"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            check=False,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert migrate.stdout.strip() == "schema applied"
        assert "applying schema.sql" in migrate.stderr  # progress, on stderr
        check = await asyncpg.connect(fresh)
        try:
            assert await check.fetchval("SELECT to_regclass('webhooks') IS NOT NULL")
        finally:
            await check.close()
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
