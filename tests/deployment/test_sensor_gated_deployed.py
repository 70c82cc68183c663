"""
The sensor-gated example in a real Airflow deployment: the sensor waits in a real triggerer, then sends.

``dag.test()`` runs a deferred task's trigger in its own process, on its own loop; a real triggerer
runs it beside others, in a runner of its own, with the Task SDK's calls answered by the supervisor.
On Airflow 3.0 the hook's async path died there (fixed in c7f4266), and the deferrable
``WhatsInfinitySessionReadySensor`` takes that path. Here the example DAG file, as it is, is deployed
to an api-server, a scheduler (LocalExecutor, SQLite), a dag-processor and a triggerer, each a process
of its own, with ``whatsinfinity_default`` pointing at an emulated session that is not linked yet
(showing its QR). The test drives Airflow only through its REST API and the session only through the
emulator's control API, as a user and a phone would:

1. A run, triggered without a logical date (the UI's default): its sensor checks once, defers, and
   stays ``deferred`` while the trigger checks the unlinked session several more times. Nothing is sent.
2. The phone links the session: the sensor succeeds, the text and the chart go out once each, and the
   run succeeds.
3. The triggerer is still alive, and no trigger runner died.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.common import KEY, PHONE, SESSION, connection_json
from tests.deployment.airflow_deployment import AirflowDeployment, running_deployment, wait_for
from tests.deployment.airflow_deployment import Observer as DeploymentObserver

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(480)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example_dags" / "example_whatsinfinity_sensor_gated.py"
DAG_ID = "example_whatsinfinity_sensor_gated"
SENSOR = "wait_for_session"
TASKS = (SENSOR, "draw_chart", "send_text", "send_chart")
#: The example's sensor's poke interval, in seconds: short enough to deploy the file as it is.
POKE_INTERVAL = 1
#: Checks the trigger must make of the unlinked session while the sensor stays deferred.
HOLD_CHECKS = 4
CHECKS_PATH = f"/check-session/{SESSION}"
#: What the triggerer logs when its trigger runner dies (Airflow 3.0 to 3.3).
RUNNER_DIED = "Trigger runner process has died"


@pytest.fixture
def deployment(tmp_path: Path, whatsinfinity_emulator: RunningEmulator) -> Iterator[AirflowDeployment]:
    """The example deployed as it is, ``whatsinfinity_default`` on an emulated session not linked yet."""
    created = whatsinfinity_emulator.create_session(SESSION, KEY)
    assert created["status"] == "qr", f"The new session is not waiting for a link: {created['status']}"
    source = EXAMPLE.read_text()
    # The file is deployed unchanged: its interval must stay short, or the holds below take minutes.
    assert source.count(f"poke_interval={POKE_INTERVAL},") == 1, (
        f"{EXAMPLE.name} no longer has one poke_interval={POKE_INTERVAL}: shorten it in a copy"
    )
    assert "deferrable=True" in source, f"{EXAMPLE.name}'s sensor no longer defers"
    (tmp_path / "dags").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "dags" / EXAMPLE.name)
    with running_deployment(
        tmp_path / "airflow",
        tmp_path / "dags",
        secrets_to_hide=(KEY,),
        AIRFLOW_CONN_WHATSINFINITY_DEFAULT=connection_json(whatsinfinity_emulator.url),
    ) as running:
        yield running


class Observer(DeploymentObserver):
    """What the test reads: the run and its tasks from Airflow; checks and the outbox from the emulator."""

    def run(self, run_id: str) -> dict[str, Any]:
        """The DAG run."""
        return dict(self.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"))

    def task_states(self, run_id: str) -> dict[str, str | None]:
        """The state of each task of the run, by task ID."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return {ti["task_id"]: ti["state"] for ti in self.get(path)["task_instances"]}

    def checks(self) -> int:
        """How many times the session has been checked so far."""
        self.deployment.assert_running()
        return len(self.emulator.requests(CHECKS_PATH))


# The emulator downloads the chart when it is sent: the message then carries its size and sha256.
@pytest.mark.whatsinfinity_emulator(fetch_media=True)
def test_deferred_sensor_waits_in_the_triggerer_then_the_sends_go_out_once(
    deployment: AirflowDeployment, whatsinfinity_emulator: RunningEmulator, report_server: tuple[Path, str]
) -> None:
    emulator = whatsinfinity_emulator
    folder, base_url = report_server
    started = time.monotonic()

    def phase(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {what}")

    with deployment.client() as api, deployment.logs_on_failure():
        seen = Observer(deployment, api, emulator)

        seen.unpause_once_parsed(DAG_ID)
        conf = {"recipient": PHONE, "report_dir": str(folder), "report_base_url": base_url}
        answer = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        assert answer.status_code == 200, f"Triggering: {answer.status_code} {answer.text}"
        run_id = answer.json()["dag_run_id"]
        phase(f"triggered {run_id}")

        # 1. The sensor checks once in a worker, finds the session unlinked and defers.
        def deferred() -> bool:
            state = seen.task_states(run_id).get(SENSOR)
            assert state not in ("success", "failed", "up_for_retry", "skipped", "upstream_failed"), (
                f"{SENSOR} is {state} before the session was linked"
            )
            return state == "deferred"

        wait_for(f"{SENSOR} to be deferred", deferred, timeout=120, interval=0.5)
        phase(f"{SENSOR} deferred")

        # The triggerer checks the unlinked session once a poke interval; the sensor stays deferred.
        start = seen.checks()
        assert start >= 1, "The sensor deferred without checking the session first"

        def checked_while_deferred() -> bool:
            states = seen.task_states(run_id)
            assert states[SENSOR] == "deferred", f"The session is not linked, yet the tasks are {states}"
            assert emulator.outbox() == [], "A message went out before the session was linked"
            return seen.checks() >= start + HOLD_CHECKS

        wait_for(
            f"{HOLD_CHECKS} checks by the trigger",
            checked_while_deferred,
            timeout=30 + HOLD_CHECKS * POKE_INTERVAL * 5,
            interval=0.5,
        )
        held = seen.checks() - start
        phase(f"{SENSOR} still deferred after {held} checks by the trigger")
        assert seen.run(run_id)["state"] == "running"

        # 2. The phone links the session: the trigger sees it ready and the sends go out.
        assert emulator.link(SESSION)["isReady"] is True

        def finished() -> dict[str, Any] | None:
            run = seen.run(run_id)
            return run if run["state"] in ("success", "failed") else None

        run = wait_for("the run to finish", finished, timeout=120)
        phase(f"run {run['state']}")
        states = seen.task_states(run_id)
        assert run["state"] == "success", states
        assert states == dict.fromkeys(TASKS, "success")
        # The sensor's answer came from the trigger's check of the linked session.
        assert seen.checks() > start + held

        text, chart = emulator.outbox(SESSION)
        assert (text["type"], text["to"]) == ("text", PHONE)
        assert text["message"] == f"Session {SESSION} is ready. This week's chart follows."
        assert (chart["type"], chart["to"], chart["caption"]) == ("image", PHONE, "Orders this week")
        [png] = folder.glob("*.png")
        assert chart["url"] == f"{base_url}/{png.name}"
        assert chart["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
        assert len(emulator.requests("/send")) == 2, "Not one request per send"

        # 3. The triggerer lived through it all.
        deployment.assert_running()
        assert deployment.processes["triggerer"].poll() is None, "The triggerer exited"
        assert RUNNER_DIED not in deployment.logs["triggerer"].read_text(errors="replace")
        phase("triggerer alive")
