"""
The provider under the CeleryExecutor: two workers, a Redis broker, a real scheduler and triggerer.

A LocalExecutor deployment runs every try on the scheduler's machine; with Celery, a task's tries and
its resumes after a deferral run on whichever worker takes them, in processes that share nothing but
Airflow's database (reached through the api-server) and the session. The delivery record must then
travel through Airflow, never stay in a worker. One deployment serves the module, started once
(in about 20 s): api-server, scheduler, dag-processor, triggerer and two ``airflow celery worker``
processes, ``worker-1`` and ``worker-2``, each its own process group, each task's ``hostname`` the
worker's name. The emulator limits every session to ``RATE_LIMIT`` messages per ``RATE_WINDOW``
seconds. The tests drive Airflow through its REST API only, and read what the phones received from
the emulator:

1. A deferrable list of 60 recipients over three sessions (``whatsinfinity_conn_id`` a list), and
   over one, waits out the rate windows in the triggerer, resuming on either worker: the task is seen
   ``deferred``, the run succeeds, and everyone gets exactly one message.
2. A send mapped over four sessions: each session sends its own recipients, each exactly once.
3. A list whose first try's worker is killed (``SIGKILL`` to its whole process group) while the try
   sleeps out a rate-limit wait, between two sends: the scheduler finds the task without a heartbeat,
   its retry runs on the other worker and skips everyone the first try reached. Last: it kills a
   worker.

Run with ``make test-celery`` (``pytest -m celery``); ``make test`` leaves the suite out.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.common import connection_json
from tests.deployment import celery_dags
from tests.deployment.airflow_deployment import AirflowDeployment, Observer, running_deployment, wait_for
from tests.deployment.celery_deployment import (
    celery_settings,
    celery_workers,
    require_celery,
    running_redis,
    wait_until_ready,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

pytestmark = [pytest.mark.celery, pytest.mark.timeout(300)]

WORKERS = ("worker-1", "worker-2")
#: Ten messages per five seconds and session: 60 recipients on one session need five deferrals.
RATE_LIMIT, RATE_WINDOW = 10, 5.0
#: Every connection of the DAGs, by connection ID: its emulated session.
SESSIONS = {
    conn_id: f"celery-{conn_id.removeprefix('wi_')}"
    for conn_id in [
        *celery_dags.LIST_SESSIONS,
        celery_dags.LIST_ONE_SESSION,
        *celery_dags.MAPPED_RECIPIENTS,
        celery_dags.RETRY_SESSION,
    ]
}
KEY = "celery-suite-session-key"
#: Seconds a worker's first try sleeps, rate limited before its sixth recipient, while it is killed.
KILL_WAIT = 30
#: Seconds without a heartbeat after which the scheduler fails a task instance (Airflow's default is
#: 300): a killed worker's try is then retried within the test's time. The worker heartbeats every 5 s.
HEARTBEAT_TIMEOUT = 15
#: The Airflow hostname of every try of every task, across the suite.
RAN_ON: list[str] = []
TERMINAL = ("success", "failed")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    """One emulator for the module, every session created and linked, each rate limited."""
    from airflow_provider_whatsinfinity.emulator.server import run_emulator

    with run_emulator(
        rate_limit=RATE_LIMIT, rate_window=RATE_WINDOW, typing_delay=0.0, connect_delay=0.2
    ) as running:
        for session in SESSIONS.values():
            running.create_session(session, KEY, link=True)
        yield running


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, emulator: RunningEmulator
) -> Iterator[AirflowDeployment]:
    """The DAGs deployed to an Airflow with the CeleryExecutor, its two workers ready."""
    require_celery()
    root = tmp_path_factory.mktemp("celery")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(Path(celery_dags.__file__), dags / "celery_dags.py")
    home = root / "airflow"
    home.mkdir()
    connections = {
        f"AIRFLOW_CONN_{conn_id.upper()}": connection_json(emulator.url, login=session, password=KEY)
        for conn_id, session in SESSIONS.items()
    }
    with (
        running_redis(root / "redis") as redis_url,
        running_deployment(
            home,
            dags,
            secrets_to_hide=(KEY,),
            executor="CeleryExecutor",
            components=celery_workers(home, WORKERS),
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
            **celery_settings(redis_url),
            **connections,
        ) as running,
    ):
        with running.logs_on_failure():
            wait_until_ready(running.logs, WORKERS)
        yield running


class CeleryObserver(Observer):
    """Runs and task instances from the REST API; what each session delivered from the emulator."""

    def trigger(self, dag_id: str) -> str:
        """Unpause the DAG once parsed, trigger a run without a logical date, and return its ID."""
        self.unpause_once_parsed(dag_id)
        answer = self.api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert answer.status_code == 200, f"Triggering {dag_id}: {answer.status_code} {answer.text}"
        return str(answer.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The run's state."""
        return str(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances, mapped ones each on its own."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return list(self.get(path)["task_instances"])

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of a task instance, oldest first, each with the ``hostname`` that ran it."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        tries = self.get(f"{path}/tries")["task_instances"]
        return sorted(tries, key=lambda each: int(each["try_number"]))

    def wait_finished(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        """Wait for the run to succeed or fail; return its state."""

        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in TERMINAL else None

        return wait_for(f"run {run_id} of {dag_id} to finish", finished, timeout=timeout)

    def delivered(self, *conn_ids: str) -> list[str]:
        """The numbers that the sessions of these connections delivered to, in delivery order."""
        return [message["to"] for conn_id in conn_ids for message in self.emulator.outbox(SESSIONS[conn_id])]


@pytest.fixture(scope="module")
def seen(deployment: AirflowDeployment, emulator: RunningEmulator) -> Iterator[CeleryObserver]:
    """What the tests read, through a client logged in to the deployment's REST API."""
    with deployment.client() as api:
        yield CeleryObserver(deployment, api, emulator)


def phase(started: float, what: str) -> None:
    """Print how far a test got, and when (pytest shows it with a failure, or with ``-s``)."""
    print(f"{time.monotonic() - started:6.1f} s  {what}", flush=True)


def _deferrable_list(seen: CeleryObserver, dag_id: str, conn_ids: list[str]) -> None:
    started = time.monotonic()
    run_id = seen.trigger(dag_id)
    phase(started, f"triggered {run_id}")
    states: list[str] = []

    def finished() -> str | None:
        [ti] = seen.task_instances(dag_id, run_id)
        if not states or states[-1] != ti["state"]:
            states.append(ti["state"])
        return ti["state"] if ti["state"] in TERMINAL else None

    state = wait_for(f"{dag_id}'s send to finish", finished, timeout=240, interval=0.3)
    phase(started, f"send {state}, through {states}")
    assert seen.wait_finished(dag_id, run_id) == "success", states
    assert "deferred" in states, f"The send never deferred: {states}"
    delivered = seen.delivered(*conn_ids)
    assert sorted(delivered) == sorted(celery_dags.LIST_RECIPIENTS), "Not everyone got exactly one message"
    assert len(set(delivered)) == len(delivered) == 60
    tries = seen.tries(dag_id, run_id, "send")
    assert [int(each["try_number"]) for each in tries] == [1], "Deferrals, not retries"
    RAN_ON.extend(each["hostname"] for each in tries)
    phase(started, f"60 recipients once each, on {[each['hostname'] for each in tries]}")


def test_a_deferrable_list_over_three_sessions_reaches_everyone_once(
    deployment: AirflowDeployment, seen: CeleryObserver
) -> None:
    with deployment.logs_on_failure():
        _deferrable_list(seen, "wi_celery_list_three_sessions", celery_dags.LIST_SESSIONS)
        for conn_id in celery_dags.LIST_SESSIONS:
            assert seen.delivered(conn_id), f"{conn_id} sent nobody"


def test_a_deferrable_list_over_one_session_resumes_on_the_workers_and_reaches_everyone_once(
    deployment: AirflowDeployment, seen: CeleryObserver
) -> None:
    with deployment.logs_on_failure():
        _deferrable_list(seen, "wi_celery_list_one_session", [celery_dags.LIST_ONE_SESSION])


def test_a_send_mapped_over_four_sessions_sends_each_recipient_once_through_its_session(
    deployment: AirflowDeployment, seen: CeleryObserver
) -> None:
    dag_id = "wi_celery_mapped"
    started = time.monotonic()
    with deployment.logs_on_failure():
        run_id = seen.trigger(dag_id)
        assert seen.wait_finished(dag_id, run_id) == "success", seen.task_instances(dag_id, run_id)
        phase(started, "mapped run succeeded")
        instances = seen.task_instances(dag_id, run_id)
        assert sorted(ti["map_index"] for ti in instances) == [0, 1, 2, 3]
        for conn_id, recipients in celery_dags.MAPPED_RECIPIENTS.items():
            assert seen.delivered(conn_id) == recipients, f"{conn_id} did not send its own list, once each"
        for ti in instances:
            tries = seen.tries(dag_id, run_id, "send", ti["map_index"])
            assert [int(each["try_number"]) for each in tries] == [1]
            RAN_ON.extend(each["hostname"] for each in tries)
        phase(started, f"ran on {sorted(set(RAN_ON))}")


def test_a_retry_after_its_worker_is_killed_runs_on_the_other_and_sends_nobody_twice(
    deployment: AirflowDeployment, seen: CeleryObserver, emulator: RunningEmulator
) -> None:
    dag_id, session = "wi_celery_retry_list", celery_dags.RETRY_SESSION
    recipients = celery_dags.RETRY_RECIPIENTS
    started = time.monotonic()
    # The sixth send is refused for KILL_WAIT seconds (certainly not sent): the first try sleeps
    # there, between two sends, and its worker is killed in that sleep.
    emulator.add_fault(
        "/send", "status", status=429, times=1, bodyContains=recipients[5], retryAfter=KILL_WAIT
    )
    with deployment.logs_on_failure():
        run_id = seen.trigger(dag_id)

        def sleeping() -> dict[str, Any] | None:
            if not any(fault["fired"] for fault in emulator.faults()):
                return None
            [ti] = seen.task_instances(dag_id, run_id)
            return ti if ti["state"] == "running" and ti["hostname"] else None

        ti = wait_for("the first try to be rate limited at the sixth recipient", sleeping, interval=0.3)
        first = ti["hostname"]
        assert first in WORKERS, f"The try ran on {first!r}, not a worker of the deployment"
        assert seen.delivered(session) == recipients[:5]
        deployment.kill(first)
        [other] = [name for name in WORKERS if name != first]
        phase(started, f"killed {first} while the first try slept; {other} is left")

        assert seen.wait_finished(dag_id, run_id, timeout=180) == "success", seen.tries(
            dag_id, run_id, "send"
        )
        tries = seen.tries(dag_id, run_id, "send")
        phase(started, f"run succeeded: {[(each['try_number'], each['hostname']) for each in tries]}")
        assert [(int(each["try_number"]), each["hostname"]) for each in tries] == [(1, first), (2, other)]
        assert [each["state"] for each in tries][-1] == "success"
        RAN_ON.extend(each["hostname"] for each in tries)

        # Everyone exactly once, in order: the retry skipped the five the first try had reached.
        assert seen.delivered(session) == recipients
        [retry_log] = (deployment.home / "logs").glob(f"dag_id={dag_id}/run_id=*/task_id=send/attempt=2.log")
        assert "already sent" in retry_log.read_text(errors="replace"), (
            "The retry did not say whom it skipped"
        )

    # Across the suite, tasks ran on both workers.
    assert set(RAN_ON) == set(WORKERS), RAN_ON
