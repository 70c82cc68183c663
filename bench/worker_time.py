"""
Benchmark B, worker time: how long a list send holds a worker slot, sleeping its waits or deferring them.

A real Airflow (``tests/deployment/airflow_deployment.py``: api-server, scheduler with the
LocalExecutor, dag-processor and triggerer, SQLite) runs ``bench/dags/whatsinfinity_bench_worker_time.py``
against the emulator at ``--rate-limit 10 --rate-window 30``. The same list (40 recipients: 4
windows) is sent through a session of its own each time, one run after the other:

- ``sleep``: ``deferrable=False``; the client sleeps each 429's ``retryAfter`` in the worker
  (``max_rate_limit_wait`` 600 s).
- ``defer``: ``deferrable=True, defer_threshold=5``; each wait of up to 30 s is a deferral to the
  triggerer, and the task resumes in a worker when the session's window has reset.
- ``defer`` again, in a second deployment with ``[workers] min_heartbeat_interval=1``: a task's
  supervisor may sleep that long in one wait after its task runner has gone (see below).

Each deployment first runs one dry-run send (``warmup``), not counted: the first task of a new
deployment waits seconds before its task runner starts.

How worker time is measured, from outside the task: a thread of this process reads every process's
title (``/proc/<pid>/cmdline``) every 50 ms. A LocalExecutor worker process is titled
``airflow worker -- LocalExecutor: <idle>`` while it waits for work, and
``airflow worker -- LocalExecutor: <task instance id>`` from the moment it takes a workload off the
queue until its supervisor has finished with it (airflow/executors/local_executor.py, ``_run_worker``);
the task runner it forks is titled ``airflow worker -- <task instance id>``. A worker slot is held by
the task while a worker process carries its ID: each stretch of samples that shows it is one
execution (the first, then one per resume after a deferral). Its length runs from halfway between the
last sample without it and the first with it to halfway after the last: within a sampling interval
at each edge. Each execution splits into the time before its task runner titled itself (fork, the
start call, the startup message), the runner's life, and the time after the runner's exit: when the
runner's sockets close before its exit is seen, the supervisor waits in a ``select()`` with nothing
to watch for up to ``min_heartbeat_interval`` (sdk/execution_time/supervisor.py,
``_monitor_subprocess``). The supervisor's own "Workload finished" lines (the scheduler's output)
give a second account. The REST API cannot say this: for a deferred task ``start_date`` stays that of
the first execution (the execution API drops it on a resume), so ``end_date - start_date`` spans the
deferrals; it is kept beside the samples as the task's wall time.

Deferrals are counted three ways that must agree: the task log's "deferring" lines, the task
instance seen ``deferred`` (REST, polled every 0.5 s), and executions in the samples minus one. The
outbox says nobody was lost or sent twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bench.common import (
    API_KEY,
    REPO,
    RESULTS,
    BenchEmulator,
    Outcome,
    Table,
    Target,
    rounded,
    timed,
    whatsinfinity_conn,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from tests.deployment.airflow_deployment import AirflowDeployment

NAME = "worker_time"
DAG_FILE = REPO / "bench" / "dags" / "whatsinfinity_bench_worker_time.py"
TASK = "send"
RATE_LIMIT = 10
#: The DAG's ``defer_threshold``, in seconds.
DEFER_THRESHOLD = 5.0
#: The deferrable run's target: the share of its wall time a worker slot is held.
TARGET_SHARE = 0.10
#: Seconds between two samples of the process table.
SAMPLE_INTERVAL = 0.05
#: The sends: mode -> (DAG, connection).
MODES = {
    "sleep": ("whatsinfinity_bench_worker_time_sleep", "wi_bench_sleep"),
    "defer": ("whatsinfinity_bench_worker_time_defer", "wi_bench_defer"),
    # A dry run to one number, once per deployment before the measured sends: a new deployment's first
    # task waits seconds before its task runner starts (measured and kept, not counted).
    "warmup": ("whatsinfinity_bench_worker_time_warmup", "wi_bench_warmup"),
}
#: The deployments: name -> (their settings over running_deployment's, the sends run in them). The
#: second changes only how long a LocalExecutor supervisor may sleep in one wait (see the module doc).
DEPLOYMENTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "default": ({}, ("sleep", "defer")),
    "heartbeat1": ({"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1"}, ("defer",)),
}
#: Titles of LocalExecutor worker processes: the slot (supervisor), and the task runner it forks.
SLOT_TITLE = "airflow worker -- LocalExecutor: "
RUNNER_TITLE = "airflow worker -- "
#: What a LocalExecutor worker's supervisor logs (to the scheduler's output) when it is done with a task.
WORKLOAD_FINISHED = re.compile(r"Workload finished.*?duration=([0-9.]+).*?workload_id=([0-9a-f-]+)")


def numbers(count: int) -> list[str]:
    """Return ``count`` distinct phone numbers."""
    return [f"4477027{index:05d}" for index in range(count)]


class TitleSampler(threading.Thread):
    """
    Samples the process table every :data:`SAMPLE_INTERVAL` seconds for LocalExecutor worker titles.

    Each sample is ``(monotonic time, wall time, the busy titles)``; the titles of idle workers are left
    out. Runs until :meth:`stop`.
    """

    def __init__(self) -> None:
        super().__init__(name="title-sampler", daemon=True)
        self.samples: list[tuple[float, float, frozenset[str]]] = []
        self._stopped = threading.Event()

    def run(self) -> None:
        """Sample until stopped, on a fixed beat (a late sample does not shift the next ones)."""
        beat = time.monotonic()
        while not self._stopped.is_set():
            self.samples.append((time.monotonic(), time.time(), frozenset(busy_titles())))
            beat += SAMPLE_INTERVAL
            self._stopped.wait(max(0.0, beat - time.monotonic()))

    def wait_idle(self, ti_id: str, quiet: float, timeout: float) -> None:
        """Return once no sample in the last ``quiet`` seconds showed ``ti_id``, or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            recent = [titles for at, _, titles in self.samples[-400:] if now - at <= quiet]
            if recent and now - self.samples[0][0] > quiet and not any(ti_id in " ".join(t) for t in recent):
                return
            time.sleep(SAMPLE_INTERVAL)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stopped.set()
        self.join(timeout=5)

    def stretches(self, title: str) -> list[tuple[float, float]]:
        """
        Return the stretches of time in which some process carried ``title``, as (start, end) wall times.

        Each edge is put halfway between the last sample on one side and the first on the other.
        """
        found: list[tuple[float, float]] = []
        samples = self.samples
        start: float | None = None
        for index, (_, wall, titles) in enumerate(samples):
            present = title in titles
            if present and start is None:
                start = (samples[index - 1][1] + wall) / 2 if index else wall
            elif not present and start is not None:
                found.append((start, (samples[index - 1][1] + wall) / 2))
                start = None
        if start is not None:
            found.append((start, samples[-1][1]))
        return found

    def intervals(self) -> list[float]:
        """Return the times between consecutive samples, in seconds."""
        return [later[0] - earlier[0] for earlier, later in zip(self.samples, self.samples[1:], strict=False)]


def busy_titles() -> set[str]:
    """Return the titles of the LocalExecutor worker processes and task runners that hold a task now."""
    titles: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                raw = handle.read(200)
        except OSError:  # gone meanwhile
            continue
        title = raw.split(b"\0", 1)[0].decode(errors="replace").strip()
        if title.startswith(RUNNER_TITLE) and not title.endswith("<idle>"):
            titles.add(title)
    return titles


def _when(text: str | None) -> float | None:
    return None if not text else dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def _deployment(
    home: Path, dags: Path, emulator_url: str, variant: str, extra: dict[str, str]
) -> Iterator[AirflowDeployment]:
    """
    Start a deployment whose connections point at this variant's sessions; failures become errors.

    ``tests/deployment/airflow_deployment.py`` reports a component that died with ``pytest.fail``, a
    ``BaseException`` that ``python -m bench`` would not catch: it becomes a ``RuntimeError`` here.
    """
    import pytest

    from tests.deployment.airflow_deployment import running_deployment

    # Any, not str: running_deployment's keyword arguments other than settings are not strings.
    settings: dict[str, Any] = {
        f"AIRFLOW_CONN_{conn_id.upper()}": whatsinfinity_conn(emulator_url, session_of(mode, variant))
        for mode, (_, conn_id) in MODES.items()
    }
    # Bytecode, as a user's install has (this machine sets PYTHONDONTWRITEBYTECODE=1): every execution
    # imports the DAG file and the provider again in its task runner.
    settings["PYTHONDONTWRITEBYTECODE"] = ""
    settings.update(extra)
    try:
        with running_deployment(home, dags, secrets_to_hide=(API_KEY,), **settings) as deployment:
            yield deployment
    except pytest.fail.Exception as failure:
        raise RuntimeError(f"The Airflow deployment failed: {failure}") from None


def session_of(mode: str, variant: str) -> str:
    """Return the emulator session that a send of ``mode`` goes through in deployment ``variant``."""
    return f"bench-wt-{mode}-{variant}"


def _send(
    deployment: AirflowDeployment,
    api: httpx.Client,
    emulator: BenchEmulator,
    mode: str,
    variant: str,
    recipients: int,
    rate_window: float,
) -> dict[str, Any]:
    """Trigger one run of a mode's DAG, watch it to its end, and return its figures."""
    from tests.deployment.airflow_deployment import Observer

    dag_id, _ = MODES[mode]
    session = session_of(mode, variant)
    seen = Observer(deployment, api, emulator)
    expected = numbers(recipients)
    windows = math.ceil(recipients / RATE_LIMIT)
    sampler = TitleSampler()
    sampler.start()
    try:
        answer = api.post(
            f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {"to": expected}}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"Triggering {dag_id}: {answer.status_code} {answer.text}")
        triggered_at = time.time()
        run_id = answer.json()["dag_run_id"]
        run_path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        states: list[tuple[float, str | None]] = []
        deadline = time.monotonic() + windows * rate_window + 240
        while True:
            ti = seen.get(f"{run_path}/taskInstances/{TASK}")
            if not states or states[-1][1] != ti["state"]:
                states.append((time.time(), ti["state"]))
            run = seen.get(run_path)
            if run["state"] in ("success", "failed"):
                finished_at = time.time()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{dag_id} run {run_id} still {run['state']} after {deadline:.0f} s: {states}"
                )
            time.sleep(0.5)
        # The run is over once the task runner reported the task's end; its worker is busy until the
        # supervisor has finished with it: sample until no process carries the task's ID for 1 s.
        ti = seen.get(f"{run_path}/taskInstances/{TASK}")
        sampler.wait_idle(ti["id"], quiet=1.0, timeout=30.0)
    finally:
        sampler.stop()
    tries = seen.get(f"{run_path}/taskInstances/{TASK}/tries")
    if run["state"] != "success":
        raise RuntimeError(
            f"{dag_id} run {run_id} ended {run['state']} (task {ti['state']}); see {deployment.home}"
        )

    slots = sampler.stretches(f"{SLOT_TITLE}{ti['id']}")
    runners = sampler.stretches(f"{RUNNER_TITLE}{ti['id']}")
    held = sum(end - start for start, end in slots)
    # Each execution: before its task runner titled itself (fork, the task's start call, the startup
    # message), the runner's life, and after the runner's exit until the worker was idle again.
    parts: list[dict[str, float]] = []
    for start, end in slots:
        inside = [(a, b) for a, b in runners if a < end and b > start]
        first, last = (inside[0][0], inside[-1][1]) if inside else (end, end)
        parts.append(
            {
                "slot_s": round(end - start, 2),
                "before_runner_s": round(max(0.0, first - start), 2),
                "runner_s": round(sum(b - a for a, b in inside), 2),
                "after_runner_s": round(max(0.0, end - last), 2),
            }
        )
    task_wall = slots[-1][1] - slots[0][0] if slots else math.nan
    rest_start, rest_end = _when(ti.get("start_date")), _when(ti.get("end_date"))
    rest_wall = rest_end - rest_start if rest_start is not None and rest_end is not None else math.nan
    supervised = [
        float(match.group(1))
        for match in WORKLOAD_FINISHED.finditer(deployment.logs["scheduler"].read_text(errors="replace"))
        if match.group(2) == ti["id"]
    ]
    logs = sorted((deployment.home / "logs").glob(f"dag_id={dag_id}/**/task_id={TASK}/*.log"))
    log_text = "\n".join(path.read_text(errors="replace") for path in logs)
    deferred_seen = sum(1 for _, state in states if state == "deferred")

    outbox = emulator.outbox(session)
    counts = Counter(message["to"] for message in outbox)
    delivered = [_when(message["deliveredAt"]) or math.nan for message in outbox]
    intervals = sampler.intervals()
    return {
        "mode": mode,
        "deployment": variant,
        "dag_id": dag_id,
        "run_id": run_id,
        "recipients": recipients,
        "windows": windows,
        "bound_s": (windows - 1) * rate_window,
        "run_wall_s": round(finished_at - triggered_at, 2),
        "task_wall_s": rounded(task_wall, 2),
        "task_wall_rest_s": rounded(rest_wall, 2),
        "first_to_last_delivery_s": rounded(delivered[-1] - delivered[0], 2) if delivered else None,
        "worker_held_s": round(held, 2),
        "worker_held_share": rounded(held / task_wall, 4),
        "executions": len(slots),
        "execution_seconds": [round(end - start, 2) for start, end in slots],
        "execution_starts_after_trigger_s": [round(start - triggered_at, 2) for start, _ in slots],
        "executions_detail": parts,
        "supervisor_reported_s": [round(seconds, 2) for seconds in supervised],
        "held_before_runner_s": round(sum(part["before_runner_s"] for part in parts), 2),
        "held_in_runner_s": round(sum(part["runner_s"] for part in parts), 2),
        "held_after_runner_s": round(sum(part["after_runner_s"] for part in parts), 2),
        "task_runner_s": round(sum(end - start for start, end in runners), 2),
        "task_runner_processes": len(runners),
        "deferrals_logged": log_text.count("deferring"),
        "deferred_seen_by_rest": deferred_seen,
        "ti_states_seen": [state for _, state in states],
        "ti_rest": {
            key: ti.get(key) for key in ("start_date", "end_date", "duration", "try_number", "state")
        },
        "tries_rest": len(tries.get("task_instances", [])),
        "lost": sum(1 for number in expected if counts[number] == 0),
        "twice": sum(1 for number in expected if counts[number] > 1),
        "delivered": len(outbox),
        "samples": len(sampler.samples),
        "sample_interval_mean_ms": rounded(1000 * sum(intervals) / len(intervals), 1) if intervals else None,
        "sample_interval_max_ms": rounded(1000 * max(intervals), 1) if intervals else None,
    }


def _keep_logs(deployment: AirflowDeployment, variant: str) -> None:
    """Copy the components' and the tasks' logs to ``bench/results/worker_time.<variant>.*.log.tmp``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for component, path in deployment.logs.items():
        if path.exists():
            shutil.copy(path, RESULTS / f"{NAME}.{variant}.{component}.log.tmp")
    for mode, (dag_id, _) in MODES.items():
        logs = sorted((deployment.home / "logs").glob(f"dag_id={dag_id}/**/task_id={TASK}/*.log"))
        text = "\n".join(path.read_text(errors="replace") for path in logs)
        if text:
            (RESULTS / f"{NAME}.{variant}.task-{mode}.log.tmp").write_text(text)


def run(
    *, recipients: int = 40, rate_window: float = 30.0, variants: tuple[str, ...] = tuple(DEPLOYMENTS)
) -> Outcome:
    """
    Run the benchmark: one list send sleeping, then deferring, each in its deployment(s).

    ``default`` runs both sends; ``heartbeat1`` the deferring one again, in a deployment whose task
    supervisors wait at most 1 s at a time.

    :param recipients: The list's length (``--rate-limit`` is 10: ``ceil(recipients/10)`` windows).
    :param rate_window: ``--rate-window`` in seconds; above the DAG's ``defer_threshold`` (5 s), so
        that the deferrable run defers.
    :param variants: The deployments to run, of :data:`DEPLOYMENTS`.
    """
    if rate_window <= DEFER_THRESHOLD:
        raise ValueError(f"rate_window must exceed the DAG's defer_threshold ({DEFER_THRESHOLD:g} s)")
    outcome = Outcome(NAME, f"Worker time of a {recipients}-recipient send, sleeping and deferring")
    windows = math.ceil(recipients / RATE_LIMIT)
    outcome.settings = {
        "recipients": recipients,
        "rate_limit": RATE_LIMIT,
        "rate_window_s": rate_window,
        "windows": windows,
        "defer_threshold_s": DEFER_THRESHOLD,
        "emulator": f"--rate-limit {RATE_LIMIT} --rate-window {rate_window:g} --typing-delay 0, own process",
        "deployment": "tests/deployment/airflow_deployment.py running_deployment: api-server, scheduler "
        "(LocalExecutor, parallelism 4, SQLite), dag-processor, triggerer; bytecode written",
        "deployments": {name: DEPLOYMENTS[name][0] for name in variants},
        "dag_file": str(DAG_FILE.relative_to(REPO)),
        "measure": f"process titles sampled every {SAMPLE_INTERVAL * 1000:.0f} ms: a LocalExecutor worker "
        "titled with the task instance's ID holds a slot",
    }
    figures: dict[str, dict[str, Any]] = {}
    warmups: dict[str, dict[str, Any]] = {}
    with (
        timed(outcome),
        BenchEmulator(rate_limit=RATE_LIMIT, rate_window=rate_window, name=f"{NAME}.emulator") as emulator,
        tempfile.TemporaryDirectory(prefix="whatsinfinity-bench-airflow-") as scratch,
    ):
        dags = Path(scratch) / "dags"
        dags.mkdir()
        shutil.copy(DAG_FILE, dags / DAG_FILE.name)
        for variant in variants:
            extra, modes = DEPLOYMENTS[variant]
            for mode in MODES:
                emulator.create_session(session_of(mode, variant), link=True)
            home = Path(scratch) / f"airflow-{variant}"
            with (
                _deployment(home, dags, emulator.url, variant, extra) as deployment,
                deployment.client() as api,
            ):
                from tests.deployment.airflow_deployment import Observer

                seen = Observer(deployment, api, emulator)
                try:
                    seen.unpause_once_parsed(MODES["warmup"][0])
                    warmups[variant] = _send(deployment, api, emulator, "warmup", variant, 1, rate_window)
                    for mode in modes:
                        seen.unpause_once_parsed(MODES[mode][0])
                        key = mode if variant == "default" else f"{mode}_{variant}"
                        figures[key] = _send(
                            deployment, api, emulator, mode, variant, recipients, rate_window
                        )
                finally:
                    _keep_logs(deployment, variant)

    table = Table(
        f"B. Worker time: {recipients} recipients, 1 session, --rate-limit {RATE_LIMIT} --rate-window "
        f"{rate_window:g} ({windows} windows, bound {(windows - 1) * rate_window:g} s), real Airflow, "
        "LocalExecutor",
        [
            "send",
            "task wall s",
            "worker held s",
            "supervisor says s",
            "share",
            "deferrals",
            "held: before runner / runner / after exit s",
            "executions (s each)",
            "run wall s",
            "lost",
            "twice",
            "target",
        ],
    )
    labels = {
        "sleep": "deferrable=False (sleeps)",
        "defer": f"deferrable=True, threshold {DEFER_THRESHOLD:g} s",
        "defer_heartbeat1": "same, min_heartbeat_interval=1",
    }
    for key, row in figures.items():
        table.add(
            labels.get(key, key),
            f"{row['task_wall_s']:.1f}",
            f"{row['worker_held_s']:.1f}",
            f"{sum(row['supervisor_reported_s']):.1f}",
            f"{100 * row['worker_held_share']:.1f}%",
            f"{row['deferrals_logged']} / {row['deferred_seen_by_rest']} / {row['executions'] - 1}",
            " / ".join(
                f"{row[part]:.1f}"
                for part in ("held_before_runner_s", "held_in_runner_s", "held_after_runner_s")
            ),
            f"{row['executions']} (" + " ".join(f"{s:.1f}" for s in row["execution_seconds"]) + ")",
            f"{row['run_wall_s']:.1f}",
            row["lost"],
            row["twice"],
            "none (reference)" if key == "sleep" else "< 10% held",
        )
    table.notes += [
        "task wall = first execution's start to the last one's end (REST end_date - start_date: "
        + ", ".join(f"{key} {row['task_wall_rest_s']} s" for key, row in figures.items())
        + "); run wall = trigger to the run's success; worker held = seconds a LocalExecutor worker "
        f"process carried the task instance's ID in its title, sampled every {SAMPLE_INTERVAL * 1000:.0f} ms",
        "supervisor says = the durations of its 'Workload finished' lines (scheduler log), summed; "
        "deferrals = task log 'deferring' lines / deferred states seen by REST polling / executions - 1; "
        "before runner = fork, start call and startup message; after exit = the supervisor's last wait "
        "(up to [workers] min_heartbeat_interval, 5 s by default) once the runner closed its sockets",
    ]
    outcome.tables.append(table)
    lost = max(row["lost"] for row in figures.values())
    twice = max(row["twice"] for row in figures.values())
    sleep_share = figures["sleep"]["worker_held_share"] if "sleep" in figures else math.nan
    for key, row in figures.items():
        if key == "sleep":
            continue
        outcome.targets.append(
            Target(
                f"worker_time: {labels.get(key, key)}, worker held / wall",
                f"< {TARGET_SHARE:.0%}",
                f"{100 * row['worker_held_share']:.1f}% ({row['worker_held_s']:.1f} of "
                f"{row['task_wall_s']:.1f} s; sleeping: {100 * sleep_share:.0f}%)",
                row["worker_held_share"] < TARGET_SHARE,
            )
        )
    outcome.targets += [
        Target("worker_time: messages lost (all runs)", "0", str(lost), lost == 0),
        Target("worker_time: messages sent twice (all runs)", "0", str(twice), twice == 0),
    ]
    table.notes.append(
        "each deployment first ran one dry-run send (not counted), whose worker held "
        + ", ".join(
            f"{row['worker_held_s']:.1f} s ({row['held_before_runner_s']:.1f} s before its runner started)"
            + f" in {variant}"
            for variant, row in warmups.items()
        )
    )
    outcome.figures = {**figures, "warmups": warmups}
    return outcome
