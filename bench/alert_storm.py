"""
Benchmark 7, alert storm: 30 failure alerts to one number within one rate window of one session.

30 ``WhatsInfinityNotifier`` instances, one per alert (``DAG alert_storm``, tasks ``t00``..``t29``,
runs ``storm_00``..``storm_29``), fire together in a worker process: from 30 threads calling
``notifier(context)`` as callbacks run, or as 30 asyncio tasks awaiting the notifier as the
triggerer runs deadline alerts. The emulator runs at ``--rate-limit 10 --rate-window 2``. The
connection's ``max_rate_limit_wait`` is 4 s, two windows: the default 120 s is two windows of the
API's 60 s. The emulator's outbox tells, per alert (found by its run id), whether it arrived, and
how often; the worker's captured log tells whether each alert that did not arrive has an ERROR line
naming it. Scenarios, side by side:

- ``before``: one message per alert (``digest=False``) and the default budget, as the notifier was;
- ``budget``: one message per alert, ``max_rate_limit_wait=`` three windows on the notifier;
- ``digest threads`` / ``digest tasks``: the default (``digest=True``) with the default budget.

Targets: none lost with the budget or the digest, none sent twice anywhere, and no alert lost
without an ERROR line that names it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from bench.common import (
    API_KEY,
    PHONE,
    BenchEmulator,
    Outcome,
    Table,
    Target,
    median,
    run_worker,
    timed,
    whatsinfinity_conn,
    worker_cpu,
    worker_main,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

NAME = "alert_storm"
SESSION = "bench-storm"
ALERTS = 30
RATE_LIMIT = 10
#: The connection's budget, in rate windows: 120 s over the API's 60 s window.
DEFAULT_BUDGET_WINDOWS = 2
RUN = re.compile(r"run (storm_\d\d)")
DIGEST_MARK = "Airflow alerts, held back by the WhatsApp rate limit"

#: name -> (what it is, notifier settings, how the alerts arrive)
SCENARIOS: dict[str, tuple[str, dict[str, Any], str]] = {
    "before": (
        "digest=False, default budget: each alert delivered as before this change",
        {"digest": False},
        "threads",
    ),
    "budget": (
        "one message per alert, max_rate_limit_wait=3 windows",
        {"digest": False, "windows": 3},
        "threads",
    ),
    "digest threads": ("digest (default), default budget, 30 threads", {"digest": True}, "threads"),
    "digest tasks": ("digest (default), default budget, 30 asyncio tasks", {"digest": True}, "tasks"),
}


def run_id(index: int) -> str:
    """Return the run id of alert ``index``."""
    return f"storm_{index:02d}"


class _TaskInstance:
    """What the default message reads of ``ti``."""

    try_number = 1

    def __init__(self, index: int) -> None:
        self.task_id = f"t{index:02d}"


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In the worker process: fire the alerts together and time them until the last one returns.

    :param config: ``alerts``, ``digest``, ``max_rate_limit_wait`` (or ``None``) and ``arrive``
        (``threads`` or ``tasks``).
    """
    from datetime import datetime

    from airflow.sdk import DAG
    from structlog.testing import capture_logs

    from airflow_provider_whatsinfinity.notifications.whatsinfinity import WhatsInfinityNotifier

    dag = DAG("alert_storm", schedule=None, start_date=datetime(2026, 1, 1))
    count = config["alerts"]
    notifiers = [
        WhatsInfinityNotifier(
            to=PHONE, digest=config["digest"], max_rate_limit_wait=config["max_rate_limit_wait"]
        )
        for _ in range(count)
    ]
    contexts: list[dict[str, Any]] = [
        {
            "dag": dag,
            "ti": _TaskInstance(index),
            "run_id": run_id(index),
            "exception": RuntimeError(f"partner feed {index} answered HTTP 503"),
        }
        for index in range(count)
    ]
    raised: list[str | None] = [None] * count
    with capture_logs() as logs:
        started = time.perf_counter()
        if config["arrive"] == "threads":
            gate = threading.Barrier(count)

            def one(index: int) -> None:
                gate.wait()
                try:
                    notifiers[index](contexts[index])
                except Exception as error:
                    raised[index] = type(error).__name__

            threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:

            async def one_task(index: int) -> None:
                notifiers[index].context = cast("Context", contexts[index])
                await notifiers[index]

            async def all_tasks() -> list[Any]:
                return await asyncio.gather(*(one_task(i) for i in range(count)), return_exceptions=True)

            for index, result in enumerate(asyncio.run(all_tasks())):
                raised[index] = type(result).__name__ if isinstance(result, BaseException) else None
        wall = time.perf_counter() - started
    error_lines = [str(entry["event"]) for entry in logs if entry.get("log_level") == "error"]
    named = [any(f"run {run_id(i)}" in line and PHONE in line for line in error_lines) for i in range(count)]
    return {
        "wall_s": wall,
        "raised": raised,
        "error_named": named,
        "error_lines": len(error_lines),
        "key_in_logs": API_KEY in json.dumps(logs, default=str),
    }


def _connection(url: str, budget: float) -> str:
    connection = json.loads(whatsinfinity_conn(url, SESSION))
    connection["extra"] = {"max_rate_limit_wait": budget}
    return json.dumps(connection)


def run(*, runs: int = 2, rate_window: float = 2.0) -> Outcome:
    """
    Run the benchmark.

    :param runs: Storms per scenario, each from a reset emulator.
    :param rate_window: The emulator's rate window in seconds; budgets are counted in windows.
    """
    outcome = Outcome(NAME, f"Alert storm: {ALERTS} alerts in one rate window, before and after")
    default_budget = DEFAULT_BUDGET_WINDOWS * rate_window
    outcome.settings = {
        "alerts": ALERTS,
        "rate_limit": RATE_LIMIT,
        "rate_window_s": rate_window,
        "connection_max_rate_limit_wait_s": default_budget,
        "runs": runs,
        "emulator": f"--rate-limit {RATE_LIMIT} --rate-window {rate_window:g} --typing-delay 0, own process",
        "budget": "the connection's max_rate_limit_wait is two windows, as the default 120 s is two of the "
        "API's 60 s windows",
        "scenarios": {name: what for name, (what, _, _) in SCENARIOS.items()},
    }
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
    with (
        timed(outcome),
        BenchEmulator(rate_limit=RATE_LIMIT, rate_window=rate_window, name=f"{NAME}.emulator") as emulator,
    ):
        env = {"AIRFLOW_CONN_WHATSINFINITY_DEFAULT": _connection(emulator.url, default_budget)}
        for _ in range(runs):
            for name, (_, settings, arrive) in SCENARIOS.items():
                emulator.reset()
                emulator.create_session(SESSION, link=True)
                time.sleep(rate_window + 0.1)  # the window linking may have started runs out first
                windows = settings.get("windows")
                config = {
                    "alerts": ALERTS,
                    "digest": settings["digest"],
                    "max_rate_limit_wait": windows * rate_window if windows else None,
                    "arrive": arrive,
                }
                result = run_worker(
                    "bench.alert_storm", config, name=f"{NAME}.worker", env=env, cpu=worker_cpu(), timeout=120
                )
                figures[name].append(_figures(emulator, result))

    table = Table(
        f"7. Alert storm: {ALERTS} alerts to one number, --rate-limit {RATE_LIMIT} "
        f"--rate-window {rate_window:g}, connection max_rate_limit_wait {default_budget:g} s (two windows)",
        ["scenario", "delivered", "lost", "twice", "lost, no ERROR", "messages", "digests", "429s", "wall s"],
    )
    for name, runs_figures in figures.items():
        for index, run_figures in enumerate(runs_figures, start=1):
            table.add(
                f"{name} ({index})",
                run_figures["delivered"],
                run_figures["lost"],
                run_figures["twice"],
                run_figures["lost_without_error_line"],
                run_figures["messages"],
                run_figures["digests"],
                run_figures["answered_429"],
                f"{run_figures['wall_s']:.2f}",
            )
    for name, (what, _, _) in SCENARIOS.items():
        table.notes.append(f"{name}: {what}")
    table.notes.append(
        "delivered/lost/twice count alerts by their run id in the emulator's outbox; a digest carries "
        "several; wall is from the alerts' start until the last notifier returned"
    )
    outcome.tables.append(table)

    def worst(names: list[str], key: str) -> int:
        return max(int(run_figures[key]) for name in names for run_figures in figures[name])

    improved = ["budget", "digest threads", "digest tasks"]
    lost = worst(improved, "lost")
    twice = worst(list(SCENARIOS), "twice")
    silent = worst(list(SCENARIOS), "lost_without_error_line")
    key_shown = any(f["key_in_logs"] for runs_figures in figures.values() for f in runs_figures)
    outcome.targets += [
        Target(
            "alert storm: alerts lost with the budget or the digest (worst run)", "0", str(lost), lost == 0
        ),
        Target("alert storm: alerts sent twice (worst run, any scenario)", "0", str(twice), twice == 0),
        Target("alert storm: alerts lost without an ERROR line naming them", "0", str(silent), silent == 0),
        Target("alert storm: API key in the logs", "never", "yes" if key_shown else "never", not key_shown),
    ]
    outcome.figures = {
        name: {
            "runs": runs_figures,
            "median_wall_s": round(median([f["wall_s"] for f in runs_figures]), 3),
            "worst_lost": max(f["lost"] for f in runs_figures),
        }
        for name, runs_figures in figures.items()
    }
    return outcome


def _figures(emulator: BenchEmulator, result: dict[str, Any]) -> dict[str, Any]:
    """Count one storm's alerts in the outbox, and match the lost ones with the worker's ERROR lines."""
    outbox = emulator.outbox(SESSION)
    counts = Counter(run for message in outbox for run in RUN.findall(message["message"]))
    sends = [r for r in emulator.requests() if r["path"] == "/send"]
    lost = [index for index in range(ALERTS) if counts[run_id(index)] == 0]
    return {
        "wall_s": round(result["wall_s"], 3),
        "delivered": sum(1 for index in range(ALERTS) if counts[run_id(index)] > 0),
        "lost": len(lost),
        "twice": sum(1 for index in range(ALERTS) if counts[run_id(index)] > 1),
        "lost_without_error_line": sum(1 for index in lost if not result["error_named"][index]),
        "notifiers_raised": Counter(name for name in result["raised"] if name),
        "error_lines": result["error_lines"],
        "messages": len(outbox),
        "digests": sum(1 for message in outbox if DIGEST_MARK in message["message"]),
        "send_requests": len(sends),
        "answered_429": sum(1 for r in sends if r["status"] == 429),
        "key_in_logs": result["key_in_logs"],
    }


if __name__ == "__main__":
    worker_main(worker)
