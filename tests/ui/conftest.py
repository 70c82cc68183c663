"""
Fixtures for the browser tests: headless Chromium and a real Airflow api-server.

The api-server runs as a subprocess with its own throw-away AIRFLOW_HOME and SQLite database (the
test process's own Airflow settings from tests/conftest.py are not passed on), with every user an
admin (no login) and the connection form's Test button enabled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.airflow_api_server import running_api_server

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


@pytest.fixture(scope="module")
def airflow_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """
    A migrated throw-away Airflow home and `airflow api-server` on a free loopback port.

    Yields the server's base URL once it answers; always stops the server afterwards.
    """
    home = tmp_path_factory.mktemp("airflow-ui-home")
    with running_api_server(
        home,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
    ) as (url, _):
        yield url
