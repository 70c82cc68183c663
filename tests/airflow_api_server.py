"""
A real ``airflow api-server`` for tests: a throw-away Airflow home, SQLite, a free loopback port.

The test process's own Airflow settings (tests/conftest.py) are not passed on: the server gets only
its home, its database and the settings a test gives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_whatsinfinity.emulator.process import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

API_SERVER_START_TIMEOUT = 120.0


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for a failure message."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the api-server and everything it started: it runs in a process group of its own."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)
    _signal_group(process, signal.SIGKILL)  # any worker left behind by the server


def airflow_env(home: Path, **settings: str) -> dict[str, str]:
    """
    Return the environment of a throw-away Airflow: this one without its ``AIRFLOW*`` settings.

    :param home: The ``AIRFLOW_HOME``, whose SQLite file is the metadata database.
    :param settings: More environment variables.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        **settings,
    )
    return env


def migrate_database(env: dict[str, str], home: Path) -> None:
    """
    Run ``airflow db migrate`` in ``home`` (not the repo: its *.egg-info would show entry points twice).

    :param env: The environment, from :func:`airflow_env`.
    :param home: The ``AIRFLOW_HOME``.
    """
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stdout}\n{migrate.stderr}"


@contextlib.contextmanager
def running_api_server(home: Path, **settings: str) -> Iterator[tuple[str, dict[str, str]]]:
    """
    Migrate a database in ``home``, start ``airflow api-server`` and yield its URL and environment.

    The server's log is ``home / "api-server.log"``; it is always stopped afterwards.

    :param home: The throw-away ``AIRFLOW_HOME``.
    :param settings: More environment variables, such as ``AIRFLOW__CORE__LOAD_EXAMPLES``.
    """
    env = airflow_env(home, **settings)
    airflow = [sys.executable, "-m", "airflow"]
    migrate_database(env, home)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "api-server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            # Not the repo: its *.egg-info would show Airflow the provider's entry points twice.
            cwd=home,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + API_SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited with {process.returncode}:\n{tail(log)}")
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"airflow api-server did not answer in {API_SERVER_START_TIMEOUT:.0f} s:\n{tail(log)}"
                )
            time.sleep(0.5)
        yield url, env
    finally:
        _stop(process)
