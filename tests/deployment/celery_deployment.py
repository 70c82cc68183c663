"""
A real Airflow with the CeleryExecutor for tests: a Redis broker and two Celery workers on loopback.

:func:`running_redis` starts Debian's ``redis-server`` (``make tools`` installs it) as a plain
process on a free loopback port, in a folder of its own and with nothing saved to disk: no daemon,
nothing left behind. :func:`celery_workers` describes ``airflow celery worker`` processes for
:func:`~tests.deployment.airflow_deployment.running_deployment`, each with its own Celery hostname,
pid file and Airflow hostname: a task instance's ``hostname`` in the REST API then names the worker
that ran each try, although every worker runs on this one machine.

The metadata database stays SQLite: Airflow 3 refuses no executor on it, and Celery's workers never
open it (tasks reach the database through the api-server's Execution API); the task states travel
through Redis, which is also the result backend.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_whatsinfinity.emulator.process import free_port
from tests.airflow_api_server import tail
from tests.deployment.airflow_deployment import Component

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Seconds redis-server may take to answer PING.
REDIS_START_TIMEOUT = 20.0
#: Task slots of each worker: few, as the machine has two cores.
WORKER_CONCURRENCY = 2
#: What Celery logs once a worker consumes its queue.
WORKER_READY = " ready."

#: ``[core] hostname_callable`` of a worker: the name its tasks report, from the worker's environment.
_HOSTNAME_MODULE = '''"""The Airflow hostname of a Celery worker of the test deployment (tests/deployment)."""

import os


def hostname() -> str:
    """Return this worker's name."""
    return os.environ["WHATSINFINITY_TEST_WORKER"]
'''


def require_celery() -> None:
    """
    Skip where Redis or the celery provider is missing, except under CI, where that is a failure.

    ``make tools`` installs Debian's redis-server, ``make test-celery`` the ``celery`` extra.
    """
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server (`make tools` installs Debian's)")
    if importlib.util.find_spec("airflow.providers.celery") is None:
        missing.append("the celery provider (`make test-celery` installs the [celery] extra)")
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Missing under CI: {'; '.join(missing)}")
    pytest.skip(f"Missing: {'; '.join(missing)}")


def _ping(port: int) -> bool:
    """Whether a Redis server answers PING on the loopback port (RESP, no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[str]:
    """
    Start ``redis-server`` on a free loopback port, yield its URL, and stop it.

    :param folder: Its working folder and log (``redis.log``); nothing is persisted there.
    """
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed: `make tools` installs Debian's"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "redis.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *(server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not _ping(port):
            if process.poll() is not None:
                pytest.fail(f"redis-server exited with {process.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer in {REDIS_START_TIMEOUT:.0f} s:\n{tail(log)}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def celery_settings(redis_url: str) -> dict[str, str]:
    """
    Return the environment that makes a deployment run its tasks through Celery on ``redis_url``.

    :param redis_url: The broker, from :func:`running_redis`; database 0 queues, database 1 results.
    """
    return {
        "AIRFLOW__CELERY__BROKER_URL": f"{redis_url}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{redis_url}/1",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
    }


def celery_workers(home: Path, names: tuple[str, ...]) -> dict[str, Component]:
    """
    Return one ``airflow celery worker`` component per name.

    :param home: The deployment's ``AIRFLOW_HOME``: the workers' pid files and hostname module go there.
    :param names: The workers' names: each one's Celery hostname, component name and Airflow hostname.
    """
    path = home / "worker-pythonpath"
    path.mkdir(parents=True, exist_ok=True)
    (path / "whatsinfinity_test_worker.py").write_text(_HOSTNAME_MODULE)
    return {
        name: Component(
            (
                *("celery", "worker", "--celery-hostname", f"{name}@%h"),
                *("--concurrency", str(WORKER_CONCURRENCY), "--pid", str(home / f"{name}.pid")),
                # Both on one machine would fight over the worker log server's port; the task logs
                # are files in the shared AIRFLOW_HOME anyway.
                "--skip-serve-logs",
                *("--without-gossip", "--without-mingle"),
            ),
            env={
                "PYTHONPATH": str(path),
                "WHATSINFINITY_TEST_WORKER": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "whatsinfinity_test_worker.hostname",
            },
        )
        for name in names
    }


def wait_until_ready(logs: dict[str, Path], names: tuple[str, ...], timeout: float = 120.0) -> None:
    """
    Wait until every named worker's log says it consumes its queue.

    :param logs: The deployment's logs, by component.
    :param names: The workers.
    :param timeout: Seconds to wait at most.
    """
    deadline = time.monotonic() + timeout
    waiting = list(names)
    while waiting:
        waiting = [name for name in waiting if WORKER_READY not in logs[name].read_text(errors="replace")]
        if waiting and time.monotonic() > deadline:
            tails = "\n".join(f"--- {name} ---\n{tail(logs[name])}" for name in waiting)
            pytest.fail(f"Celery workers not ready in {timeout:.0f} s: {', '.join(waiting)}\n{tails}")
        time.sleep(0.5)
