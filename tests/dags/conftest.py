from __future__ import annotations

import functools
import http.server
import importlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import KEY, SESSION
from tests.hooks.conftest import connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "files"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database (SQLite in the test session's AIRFLOW_HOME)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


@pytest.fixture
def airflow_env(airflow_db, whatsinfinity_emulator, monkeypatch):
    """The default connection on the emulator, its session created and linked."""
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    return whatsinfinity_emulator


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


def example_module(name: str) -> Any:
    """Import an example DAG module the way the DAG processor would, with its folder on sys.path."""
    if str(EXAMPLE_DAGS) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_DAGS))
    return importlib.import_module(name)


def load_example(name: str) -> Any:
    """Return an example's DAG."""
    return example_module(name).dag


def task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
