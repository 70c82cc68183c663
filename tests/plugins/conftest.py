"""
A real ``airflow api-server`` with the simple auth manager and two users, for the console's API.

As tests/ui/conftest.py's fixture, but with logins: ``admin`` (role admin) and ``viewer`` (role
viewer), their passwords read from the file the simple auth manager writes, their tokens from
``POST /auth/token``. The auth manager is the simple one with viewers allowed to read connections
(:mod:`tests.plugins.auth_manager`), so that a user who may read connections but not edit them exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_whatsinfinity.emulator.process import free_port
from tests.plugins.auth_manager import ConnectionReadingViewersAuthManager

if TYPE_CHECKING:
    from collections.abc import Iterator

API_SERVER_START_TIMEOUT = 120.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class AirflowServer:
    """A running api-server: its URL, its environment (for the CLI), and a token per user."""

    url: str
    env: dict[str, str]
    tokens: dict[str, str]
    log: Path

    def client(self, user: str | None) -> httpx.Client:
        """An HTTP client for the server, logged in as ``user`` (anonymous for ``None``)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _tail(path: Path, lines: int = 40) -> str:
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
    _signal_group(process, signal.SIGKILL)


@pytest.fixture(scope="module")
def airflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """A migrated throw-away Airflow home and `airflow api-server` with users admin and viewer."""
    home = tmp_path_factory.mktemp("airflow-console-home")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer",
        AIRFLOW__CORE__AUTH_MANAGER=f"{ConnectionReadingViewersAuthManager.__module__}.{ConnectionReadingViewersAuthManager.__name__}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run(
        [*airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stdout}\n{migrate.stderr}"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "api-server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + API_SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited with {process.returncode}:\n{_tail(log)}")
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"airflow api-server did not answer in {API_SERVER_START_TIMEOUT:.0f} s:\n{_tail(log)}"
                )
            time.sleep(0.5)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        tokens = {}
        for user in ("admin", "viewer"):
            answer = httpx.post(
                f"{url}/auth/token", json={"username": user, "password": passwords[user]}, timeout=30
            )
            assert answer.status_code in (200, 201), answer.text
            tokens[user] = answer.json()["access_token"]
        yield AirflowServer(url=url, env=env, tokens=tokens, log=log)
    finally:
        _stop(process)
