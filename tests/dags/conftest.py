from __future__ import annotations

import contextlib
import functools
import importlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_whatsinfinity.emulator.control import EmulatorControl
from tests.common import KEY, SESSION, connection_json

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "files"


@pytest.fixture
def airflow_env(airflow_db, whatsinfinity_emulator, monkeypatch):
    """The default connection on the emulator, its session created and linked."""
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    return whatsinfinity_emulator


#: The sessions of ``example_whatsinfinity_many_sessions``: connection id -> (session ID, API key).
EXAMPLE_SESSIONS = {
    "whatsinfinity_a": ("session-a", "session-a-key-0123"),
    "whatsinfinity_b": ("session-b", "session-b-key-0123"),
    "whatsinfinity_c": ("session-c", "session-c-key-0123"),
}


@pytest.fixture
def example_sessions(airflow_env, monkeypatch):
    """The default session, and the many-sessions example's three, each linked, with its connection."""
    for conn_id, (session_id, key) in EXAMPLE_SESSIONS.items():
        airflow_env.create_session(session_id, key, link=True)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(airflow_env.url, session_id, key)
        )
    return airflow_env


def example_module(name: str) -> Any:
    """Import an example DAG module the way the DAG processor would, with its folder on sys.path."""
    if str(EXAMPLE_DAGS) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_DAGS))
    return importlib.import_module(name)


def load_example(name: str) -> Any:
    """Return an example's DAG."""
    return example_module(name).dag


def dag_bag(folder: Path) -> Any:
    """Parse a folder or file of DAGs as the DAG processor does (``DagBag`` moved in Airflow 3.2)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[attr-defined,no-redef,unused-ignore]

    return DagBag(dag_folder=str(folder))


def load_test_dag(dag_id: str) -> Any:
    """Return one of the tests' own DAGs (tests/dags/files)."""
    return dag_bag(TEST_DAGS / "whatsinfinity_test_dags.py").get_dag(dag_id)


def task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@contextlib.contextmanager
def phone_links(
    emulator: Any, path: str, *, answered: int = 1, session: str = SESSION, timeout: float = 300.0
) -> Iterator[threading.Event]:
    """
    Link ``session`` as its phone would, once the emulator has answered ``path`` ``answered`` times.

    The moment is set by what the DAG run has done (fetched the QR, asked for a pairing code, checked
    the session), never by a timer: a slow ``dag.test()`` only makes the phone wait longer. The link
    is made from a thread through the emulator's control API while the ``with`` block runs the DAG.

    :param emulator: The ``whatsinfinity_emulator`` fixture's emulator (its ``url`` is used).
    :param path: A request path, such as ``/pairing-code`` or ``/check-session/mysession``; only
        requests answered with HTTP 200 count.
    :param answered: How many such answers to wait for before linking.
    :param session: The session to link.
    :param timeout: Seconds to wait at most; the thread also stops when the block ends.
    :return: An event that is set once the session has been linked.
    """
    linked = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        try:
            with EmulatorControl(emulator.url) as control:
                while not stop.is_set() and time.monotonic() < deadline:
                    seen = [r for r in control.requests(path) if r["status"] == 200]
                    if len(seen) >= answered:
                        control.link(session)
                        linked.set()
                        return
                    stop.wait(0.05)
        except BaseException as error:  # handed to the test below
            errors.append(error)

    thread = threading.Thread(target=watch, name=f"phone-links-{session}", daemon=True)
    thread.start()
    try:
        yield linked
    finally:
        stop.set()
        thread.join(timeout=30)
    if errors:
        raise errors[0]


#: What the failure-context probe's task raises.
PROBE_ERROR = "probe: is the exception in the failure callback's context?"


@functools.cache
def failure_callbacks_get_the_exception() -> bool:
    """
    Whether ``dag.test()`` on this Airflow puts the task's exception in its failure callback's context.

    A feature probe, not a version check: it runs ``wi_test_failure_context``, whose task fails and
    whose ``on_failure_callback`` writes down what its context held. Deployed Airflow always supplies
    the exception; ``dag.test()`` on Airflow 3.0 to 3.2 leaves it out. Needs the ``airflow_db``
    fixture.
    """
    record = Path(tempfile.mkdtemp(prefix="whatsinfinity-probe-")) / "failure-context.json"
    run = load_test_dag("wi_test_failure_context").test(run_conf={"record_to": str(record)})
    assert task_states(run) == {"fail": "failed"}, "the probe's task must fail"
    assert record.exists(), "the probe's on_failure_callback did not run"
    seen = json.loads(record.read_text())
    return bool(seen["has_exception"]) and PROBE_ERROR in seen["exception"]


@pytest.fixture(scope="session")
def exception_in_failure_context(airflow_db) -> bool:
    """Whether a task's failure callback gets its exception under ``dag.test()`` on this Airflow."""
    return failure_callbacks_get_the_exception()
