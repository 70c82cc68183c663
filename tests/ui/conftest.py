"""
Fixtures for the browser tests: headless Chromium and a real Airflow api-server.

The api-server runs as a subprocess with its own throw-away AIRFLOW_HOME and SQLite database (the
test process's own Airflow settings from tests/conftest.py are not passed on), with every user an
admin (no login) and the connection form's Test button enabled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_whatsinfinity.emulator.process import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, started as FIELD-NOTES.md says. Playwright adds --headless itself and gives every
# launch a fresh --user-data-dir of its own (it refuses one passed in args).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
API_SERVER_START_TIMEOUT = 120.0


@pytest.fixture(scope="module", autouse=True)
def _require_chromium() -> None:
    """Skip the browser tests where there is no chromium, except under CI, where that is a failure."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing under CI: `make tools` (in .ci/run) should have installed it")
    pytest.skip(f"{CHROMIUM} is missing: run `make tools` to install Debian's chromium for the ui tests")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where the browser tests save their screenshots (test-artifacts/ at the repo root, git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium driven by Playwright (which never downloads a browser of its own here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


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
    _signal_group(process, signal.SIGKILL)  # any worker left behind by the server


@pytest.fixture(scope="module")
def airflow_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """
    A migrated throw-away Airflow home and `airflow api-server` on a free loopback port.

    Yields the server's base URL once it answers; always stops the server afterwards.
    """
    home = tmp_path_factory.mktemp("airflow-ui-home")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
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
        yield url
    finally:
        _stop(process)
