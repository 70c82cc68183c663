"""
The session-health example in a real Airflow deployment: one DAG run per change, none while a state holds.

``dag.test()`` never runs a trigger behind an ``AssetWatcher``; here the example DAG file (its poll
interval shortened) is deployed to an api-server, a scheduler (LocalExecutor, SQLite), a dag-processor
and a triggerer, each a process of its own, with ``whatsinfinity_default`` pointing at the emulator.
The test drives Airflow only through its REST API and the session only through the emulator's control
API, as a user and a phone would:

1. The session is ready and the DAG unpaused: the trigger's first checks are a baseline, no run.
2. The session drops: one run alerts the on-call number and restarts the session. The restart brings
   the session back to ready, a change of its own: one more run, which alerts and restarts nothing.
3. Nothing changes for several poll intervals: no more runs.
4. A warning appears: one more run; then nothing more while it stays.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.common import KEY, SESSION, connection_json
from tests.deployment.airflow_deployment import AirflowDeployment, running_deployment, wait_for
from tests.deployment.airflow_deployment import Observer as DeploymentObserver

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(480)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example_dags" / "example_whatsinfinity_session_health.py"
DAG_ID = "example_whatsinfinity_session_health"
ASSET_URI = "whatsinfinity://whatsinfinity_default/session-health"
#: The example's default ``oncall`` param.
ONCALL = "447700900123"
#: Seconds between two checks of the deployed trigger (the example says 60).
POLL_INTERVAL = 2
#: Checks of the session that must pass without a change before a state counts as held.
HOLD_CHECKS = 5
WARNING = "Unusual activity: this number may be restricted"
TASKS = ("describe_change", "became_disconnected", "restart_session")


def deployable_example(dags_folder: Path) -> Path:
    """
    Copy the example DAG file into ``dags_folder`` with a poll interval of :data:`POLL_INTERVAL` seconds.

    Fails when the example no longer says ``poll_interval=60`` exactly once: the test must then be
    told how to shorten the new example's interval, rather than wait a minute per check unnoticed.

    :param dags_folder: The deployment's DAG folder.
    """
    source = EXAMPLE.read_text()
    assert source.count("poll_interval=60") == 1, f"{EXAMPLE.name} no longer has one poll_interval=60"
    dags_folder.mkdir(parents=True, exist_ok=True)
    copy = dags_folder / EXAMPLE.name
    copy.write_text(source.replace("poll_interval=60", f"poll_interval={POLL_INTERVAL}"))
    return copy


@pytest.fixture
def deployment(tmp_path: Path, whatsinfinity_emulator: RunningEmulator) -> Iterator[AirflowDeployment]:
    """The example deployed to a running Airflow, ``whatsinfinity_default`` on the emulator's session."""
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    deployable_example(tmp_path / "dags")
    with running_deployment(
        tmp_path / "airflow",
        tmp_path / "dags",
        secrets_to_hide=(KEY,),
        AIRFLOW_CONN_WHATSINFINITY_DEFAULT=connection_json(whatsinfinity_emulator.url),
        # The watcher's trigger is registered when the file is parsed with its DAG unpaused: parse often.
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="2",
    ) as running:
        yield running


class Observer(DeploymentObserver):
    """What the test reads: runs, tasks and asset events from Airflow; checks and outbox from the emulator."""

    def runs(self) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first."""
        runs = self.get(f"/api/v2/dags/{DAG_ID}/dagRuns", limit=100)["dag_runs"]
        return sorted(runs, key=lambda run: (run.get("run_after") or "", run["dag_run_id"]))

    def finished_runs(self, count: int, most: int | None = None) -> list[dict[str, Any]] | None:
        """
        All runs once the oldest ``count`` have finished; ``None`` before.

        :param count: How many runs must have finished.
        :param most: How many runs there may be meanwhile (``count`` unless said); fails on more.
        """
        runs = self.runs()
        most = count if most is None else most
        assert len(runs) <= most, f"{len(runs)} DAG runs, expected at most {most}: {summary(runs)}"
        if len(runs) >= count and all(run["state"] in ("success", "failed") for run in runs[:count]):
            return runs
        return None

    def task_states(self, run: dict[str, Any]) -> dict[str, str | None]:
        """The state of each task of a run, by task ID."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances"
        return {ti["task_id"]: ti["state"] for ti in self.get(path)["task_instances"]}

    def triggering_events(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """The asset events that started a run."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}/upstreamAssetEvents"
        return list(self.get(path)["asset_events"])

    def asset_events(self) -> list[dict[str, Any]]:
        """Every event of the session-health asset, oldest first."""
        events = self.get("/api/v2/assets/events", limit=100)["asset_events"]
        ours = [event for event in events if event.get("uri", ASSET_URI) == ASSET_URI]
        return sorted(ours, key=lambda event: (event["timestamp"], event["id"]))

    def checks(self) -> int:
        """How many times the session has been checked so far."""
        self.deployment.assert_running()
        return len(self.emulator.requests(f"/check-session/{SESSION}"))

    def alerts(self) -> list[str]:
        """The texts the on-call number received, in delivery order."""
        return [m.get("message", "") for m in self.emulator.outbox(SESSION) if m["to"] == ONCALL]

    def alerts_when(self, count: int) -> list[str] | None:
        """The on-call number's texts once there are at least ``count``; ``None`` before."""
        alerts = self.alerts()
        return alerts if len(alerts) >= count else None

    def hold(self, runs: int, events: int) -> None:
        """
        Let :data:`HOLD_CHECKS` checks pass, then assert that no run and no event came of them.

        :param runs: The number of DAG runs there must still be.
        :param events: The number of asset events there must still be.
        """
        start = self.checks()
        wait_for(f"{HOLD_CHECKS} more session checks", lambda: self.checks() >= start + HOLD_CHECKS, 60)
        time.sleep(POLL_INTERVAL)  # an event of the last check would have reached the database by now
        after = self.runs()
        assert len(after) == runs, f"A state that held started DAG runs: {summary(after)}"
        assert len(self.asset_events()) == events, f"A state that held made events: {self.asset_events()}"


def summary(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The ID and state of each run, for a failure message."""
    return [(run["dag_run_id"], run["state"]) for run in runs]


def payload(event: dict[str, Any]) -> dict[str, Any]:
    """The trigger's event payload that an asset event carries."""
    body = (event.get("extra") or {}).get("payload")
    assert isinstance(body, dict), f"Asset event without the trigger's payload: {event}"
    return body


def test_one_run_per_session_change_none_while_it_holds(
    deployment: AirflowDeployment, whatsinfinity_emulator: RunningEmulator
) -> None:
    emulator = whatsinfinity_emulator
    started = time.monotonic()

    def phase(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {what}")

    with deployment.client() as api, deployment.logs_on_failure():
        seen = Observer(deployment, api, emulator)

        # 1. Deployed and unpaused: the trigger checks the ready session; a baseline is not a change.
        seen.unpause_once_parsed(DAG_ID)
        wait_for("the trigger's baseline and two more checks", lambda: seen.checks() >= 3)
        phase("trigger polling")
        seen.hold(runs=0, events=0)
        phase("held after the baseline")

        # 2. The session drops: one run alerts and restarts it.
        assert emulator.disconnect(SESSION)["status"] == "disconnected"
        # The restart ends the run and brings the session back: the next run may start before it ends.
        dropped = wait_for("the run of the disconnection", lambda: seen.finished_runs(1, most=2))[0]
        phase("run of the disconnection finished")
        assert dropped["state"] == "success", summary([dropped])
        assert seen.task_states(dropped) == dict.fromkeys(TASKS, "success")
        [event] = seen.triggering_events(dropped)
        change = payload(event)
        assert change["reasons"] == ["status"]
        assert (change["old"]["status"], change["new"]["status"]) == ("active", "disconnected")

        # The restart brings the session back (connecting, then active): a change, and one more run.
        runs = wait_for("the run of the return to ready", lambda: seen.finished_runs(2))
        back = runs[1]
        phase("run of the return to ready finished")
        assert back["state"] == "success", summary(runs)
        assert seen.task_states(back) == {
            "describe_change": "success",
            "became_disconnected": "skipped",
            "restart_session": "skipped",
        }
        [event] = seen.triggering_events(back)
        change = payload(event)
        assert change["reasons"] == ["status"]
        assert change["old"]["status"] in ("disconnected", "connecting")
        assert change["new"]["status"] == "active"
        assert change["new"]["is_ready"] is True

        # Each run alerted once; the first alert waited in the dropped session's queue until the restart.
        alerts = wait_for("two alerts to the on-call number", lambda: seen.alerts_when(2))
        assert len(alerts) == 2, alerts
        assert [text for text in alerts if "-> disconnected" in text] == [alerts[0]], alerts
        assert "active -> disconnected (status)" in alerts[0]
        assert "-> active (status)" in alerts[1]
        statuses = [payload(event)["new"]["status"] for event in seen.asset_events()]
        assert statuses == ["disconnected", "active"], "Not one asset event per change"

        # 3. Ready, and it stays so: nothing more.
        seen.hold(runs=2, events=2)
        phase("held after the return to ready")

        # 4. A warning appears: one run, which alerts but restarts nothing; then nothing while it stays.
        assert emulator.set_warning(SESSION, WARNING)["warning"] == WARNING
        runs = wait_for("the run of the warning", lambda: seen.finished_runs(3))
        warned = runs[2]
        phase("run of the warning finished")
        assert warned["state"] == "success", summary(runs)
        assert seen.task_states(warned) == {
            "describe_change": "success",
            "became_disconnected": "skipped",
            "restart_session": "skipped",
        }
        [event] = seen.triggering_events(warned)
        change = payload(event)
        assert change["reasons"] == ["warning"]
        assert change["new"]["warning"] == WARNING
        alerts = wait_for("the warning's alert", lambda: seen.alerts_when(3))
        assert len(alerts) == 3, alerts
        assert f"warning: {WARNING}" in alerts[2]
        seen.hold(runs=3, events=3)
        phase("held after the warning")
