from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Airflow reads its settings when first imported: point it at a throw-away home and SQLite database
# before any test module imports it, so that no test touches ~/airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="whatsinfinity-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
# dag.test() finds DAGs through the configured bundles: the examples, and the tests' own DAG files.
_REPO = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path)},
        }
        for name, path in (
            ("examples", _REPO / "example_dags"),
            ("test-dags", _REPO / "tests" / "dags" / "files"),
        )
    ]
)

import httpx  # noqa: E402
import pytest  # noqa: E402

from tests.common import KEY, SESSION, connection_json  # noqa: E402
from tests.proxy import proxy  # noqa: E402, F401 - the misbehaving proxy fixture, for every test

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator


@pytest.fixture
def api(whatsinfinity_emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """A plain HTTP client on the emulator, sending the default session's key."""
    with httpx.Client(base_url=whatsinfinity_emulator.url, headers={"x-api-key": KEY}, timeout=30) as client:
        yield client


@pytest.fixture
def linked(whatsinfinity_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with the default session created and linked."""
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    return whatsinfinity_emulator


@pytest.fixture
def hook(whatsinfinity_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A hook on the default connection, pointed at the emulator through AIRFLOW_CONN_..."""
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    return WhatsInfinityHook()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def report_server(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder and the loopback URL that serves it, as a report's web server would."""
    folder = tmp_path / "reports"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database (SQLite in the test session's AIRFLOW_HOME)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
