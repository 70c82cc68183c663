from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.common import KEY, SESSION, connection_json

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "files"


@pytest.fixture
def airflow_env(airflow_db, whatsinfinity_emulator, monkeypatch):
    """The default connection on the emulator, its session created and linked."""
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    return whatsinfinity_emulator


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


def task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
