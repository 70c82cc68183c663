"""
A real Airflow deployment for tests: api-server, scheduler, dag-processor and triggerer, each its own process.

As :func:`tests.airflow_api_server.running_api_server`, the deployment gets a throw-away
``AIRFLOW_HOME``, a SQLite database and a free loopback port, and none of the test process's own
Airflow settings (tests/conftest.py). The scheduler runs tasks with the LocalExecutor unless a test
names another executor and starts its workers as more :class:`Component` s (the CeleryExecutor suite,
tests/deployment/celery_deployment.py). Each component runs in a process group of its own, killed as
a whole afterwards: LocalExecutor workers, Celery's pool and the triggerer's runner outlive their
parent otherwise. A user ``admin`` logs in through ``POST /auth/token``, as a user of the REST API
would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

from airflow_provider_whatsinfinity.emulator.process import free_port
from tests.airflow_api_server import airflow_env, migrate_database, tail

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

T = TypeVar("T")

#: Seconds the api-server may take to answer its health check.
START_TIMEOUT = 120.0
#: The components started besides the api-server, each by ``airflow <component>``.
COMPONENTS = ("scheduler", "dag-processor", "triggerer")
#: What the triggerer logs when a trigger ends in error or without an event (Airflow 3.0 to 3.3).
TRIGGER_ENDED = (
    "exited with error",
    "Trigger exited without sending an event",
    "Trigger runner process has died",
)


@dataclass(frozen=True)
class Component:
    """
    A process a deployment starts besides the four it always runs, such as a Celery worker.

    :param command: The arguments after ``airflow``, such as ``("celery", "worker")``.
    :param env: Environment variables of this process only, over the deployment's.
    """

    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class AirflowDeployment:
    """
    A running deployment: its REST API's URL, its home, a token, and where each component logs.

    :param url: Base URL of the api-server.
    :param home: The throw-away ``AIRFLOW_HOME``.
    :param token: A bearer token of user ``admin``.
    :param logs: Each component's log file, by component.
    :param processes: Each component's process, by component.
    :param secrets: Strings never to show in a log tail (an API key passed in a connection).
    :param killed: Components a test killed on purpose (:meth:`kill`): their exit is no failure.
    """

    url: str
    home: Path
    # Neither shown in a repr: pytest prints the deployment's with a failure.
    token: str = field(repr=False)
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen[bytes]]
    secrets: tuple[str, ...] = field(default=(), repr=False)
    killed: set[str] = field(default_factory=set)

    def kill(self, name: str) -> None:
        """
        Kill a component and everything it started at once (``SIGKILL`` to its process group), as a
        lost machine would: nothing of it gets to clean up.

        :param name: The component, such as ``worker-1``.
        """
        self.killed.add(name)
        process = self.processes[name]
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)

    def assert_running(self) -> None:
        """Fail at once when a component has exited or a trigger has failed: waiting would only time out."""
        # The trigger first: when its failure takes the triggerer down, it is the cause worth naming.
        log = self.logs.get("triggerer")
        if log is not None and log.exists():
            lines = log.read_text(errors="replace").splitlines()
            ended = [line for line in lines if any(marker in line for marker in TRIGGER_ENDED)]
            if ended:
                first_error = next((line for line in lines if "error" in line.lower()), ended[0])
                pytest.fail(
                    "A trigger ended in error or without its event, or the trigger runner died: "
                    f"{self._hide(ended[0])[:500]}\nFirst error: {self._hide(first_error)[:700]}"
                )
        for name, process in self.processes.items():
            if name not in self.killed and process.poll() is not None:
                pytest.fail(f"airflow {name} exited with {process.returncode}; its log is below")

    def _hide(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def client(self) -> httpx.Client:
        """Return an HTTP client for the REST API, logged in as ``admin``."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def log_tails(self, lines: int = 60) -> str:
        """
        Return the last lines of each component's log and of every task's log, secrets redacted.

        :param lines: Lines per log.
        """
        parts = [f"--- {name} ({path}) ---\n{tail(path, lines)}" for name, path in self.logs.items()]
        for task_log in sorted((self.home / "logs").glob("dag_id=*/**/*.log")):
            relative = task_log.relative_to(self.home / "logs")
            parts.append(f"--- task log {relative} ---\n{tail(task_log, lines // 2)}")
        return self._hide("\n".join(parts))

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Print the log tails when the block raises (pytest shows them with the failure)."""
        try:
            yield
        except BaseException:
            print(self.log_tails())
            raise


class Observer:
    """
    What a deployment test reads: Airflow through its REST API, the session through the emulator.

    :param deployment: The deployment.
    :param api: A logged-in client of its REST API.
    :param emulator: The emulator its connection points at.
    """

    def __init__(self, deployment: AirflowDeployment, api: httpx.Client, emulator: Any) -> None:
        self.deployment = deployment
        self.api = api
        self.emulator = emulator

    def get(self, path: str, **params: Any) -> Any:
        """GET a REST API path and return its JSON, failing on any status but 200 or a component gone."""
        self.deployment.assert_running()
        answer = self.api.get(path, params=params)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def unpause_once_parsed(self, dag_id: str) -> None:
        """
        Wait until the dag-processor has parsed the DAG without import errors, then unpause it.

        :param dag_id: The DAG.
        """

        def parsed() -> bool:
            errors = self.get("/api/v2/importErrors")["import_errors"]
            assert not errors, f"The example does not import in the deployment: {errors}"
            return self.api.get(f"/api/v2/dags/{dag_id}").status_code == 200

        wait_for(f"the dag-processor to parse {dag_id}", parsed)
        answer = self.api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert answer.status_code == 200, f"Unpausing: {answer.status_code} {answer.text}"
        assert answer.json()["is_paused"] is False


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0, interval: float = 1.0) -> T:
    """
    Call ``probe`` until it returns something truthy, and return that; fail after ``timeout`` seconds.

    :param what: What is awaited, for the failure message.
    :param probe: Returns the awaited value, or something falsy while it is not there yet.
    :param timeout: Seconds to wait at most.
    :param interval: Seconds between two calls.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Waited {timeout:.0f} s for {what}; last seen: {value!r}")
        time.sleep(interval)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop every component and everything each started, all at once rather than one by one."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # any worker left behind


@contextlib.contextmanager
def running_deployment(
    home: Path,
    dags_folder: Path,
    *,
    secrets_to_hide: tuple[str, ...] = (),
    executor: str = "LocalExecutor",
    components: Mapping[str, Component] | None = None,
    **settings: str,
) -> Iterator[AirflowDeployment]:
    """
    Migrate a database in ``home``, start the four components and yield the deployment once it answers.

    :param home: The throw-away ``AIRFLOW_HOME``; each component logs to ``<component>.log`` in it.
    :param dags_folder: The DAG files to deploy.
    :param secrets_to_hide: Strings redacted from log tails.
    :param executor: The scheduler's ``[core] executor``, such as ``CeleryExecutor``.
    :param components: More processes to start, by name, such as the executor's workers; started
        after the four, and stopped with them.
    :param settings: More environment variables, such as ``AIRFLOW_CONN_...`` or
        ``AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL``.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bin_dir = str(Path(sys.executable).parent)
    env = airflow_env(
        home,
        PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__EXECUTOR=executor,
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        # Every component signs and checks the same tokens (the generated airflow.cfg would agree too).
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="2",
        AIRFLOW__API__PORT=str(port),
        # The log servers of the workers and the triggerer default to ports 8793 and 8794: two
        # deployments at once (a test matrix, another test run) must not fight over them.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        **settings,
    )
    airflow = [sys.executable, "-m", "airflow"]
    migrate_database(env, home)

    commands: dict[str, Component] = {
        "api-server": Component(("api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")),
        **{name: Component((name,)) for name in COMPONENTS},
        **(components or {}),
    }
    logs = {name: home / f"{name}.log" for name in commands}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, component in commands.items():
            with logs[name].open("wb") as log_file:
                processes[name] = subprocess.Popen(
                    [*airflow, *component.command],
                    env={**env, **component.env},
                    # Not the repo: ``python -m`` puts the working directory on sys.path, and the
                    # repo's *.egg-info would show Airflow the provider's entry points twice.
                    cwd=home,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )

        def all_tails() -> str:
            text = "\n".join(f"--- {name} ---\n{tail(path)}" for name, path in logs.items())
            for secret in secrets_to_hide:
                text = text.replace(secret, "***")
            return text

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    pytest.fail(f"airflow {name} exited with {process.returncode}:\n{all_tails()}")
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer in {START_TIMEOUT:.0f} s:\n{all_tails()}")
            time.sleep(0.5)

        passwords: dict[str, Any] = json.loads(
            (home / "simple_auth_manager_passwords.json.generated").read_text()
        )
        answer = httpx.post(
            f"{url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30
        )
        assert answer.status_code in (200, 201), f"POST /auth/token: {answer.status_code} {answer.text}"
        yield AirflowDeployment(
            url=url,
            home=home,
            token=answer.json()["access_token"],
            logs=logs,
            processes=processes,
            secrets=secrets_to_hide,
        )
    finally:
        _stop_all(list(processes.values()))
