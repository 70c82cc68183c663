"""
Benchmark 1, DAG-parse cost: the import time a DAG file pays for our operators, sensor and notifier.

Each figure is the time of one import statement in a fresh interpreter that has already done
``import airflow.sdk`` and ``from airflow.sdk import DAG, BaseOperator, BaseSensorOperator,
BaseNotifier`` (what any DAG file with operators loads anyway), measured inside that interpreter;
median of ``--reps`` interpreters per import, beside the http provider's ``HttpOperator`` and
``HttpSensor`` and the slack notifier measured the same way. Imports are interleaved round-robin,
and each runs once first (not counted) so that ``.pyc`` files exist. One extra ``-X importtime``
run per import names its heaviest modules. Target: at most 10 ms for ours.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import REPO, Outcome, Table, Target, cpus, median, ms, pin, rounded, timed, worker_env

NAME = "parse_cost"
TARGET_SECONDS = 0.010
MARK = "--whatsinfinity-bench-mark--"

# Runs in a fresh interpreter; TARGET is replaced by the import statement measured.
PROBE = """
import sys, time
t0 = time.perf_counter()
import airflow.sdk
from airflow.sdk import DAG, BaseOperator, BaseSensorOperator, BaseNotifier
t1 = time.perf_counter()
import json
before = set(sys.modules)
sys.stderr.write("MARK\\n")
sys.stderr.flush()
t2 = time.perf_counter()
TARGET
t3 = time.perf_counter()
new = sorted(set(sys.modules) - before)
print(json.dumps({"baseline_s": t1 - t0, "extra_s": t3 - t2, "new_modules": new}))
"""


@dataclass(frozen=True)
class Import:
    """
    One import measured.

    :param label: Its name in the table.
    :param statement: The import statement.
    :param ours: Whether it is this provider's (and so has the target).
    """

    label: str
    statement: str
    ours: bool


IMPORTS = [
    Import(
        "ours: operators.whatsinfinity",
        "from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator",
        True,
    ),
    Import(
        "ours: sensors.whatsinfinity",
        "from airflow_provider_whatsinfinity.sensors.whatsinfinity import WhatsInfinitySessionReadySensor",
        True,
    ),
    Import(
        "ours: notifications.whatsinfinity",
        "from airflow_provider_whatsinfinity.notifications.whatsinfinity import WhatsInfinityNotifier",
        True,
    ),
    Import(
        "ours: all three",
        # The operators module loads its classes on first use: import them all, as a DAG would.
        "from airflow_provider_whatsinfinity.operators.whatsinfinity import *; "
        "import airflow_provider_whatsinfinity.sensors.whatsinfinity, "
        "airflow_provider_whatsinfinity.notifications.whatsinfinity",
        True,
    ),
    Import("http: HttpOperator", "from airflow.providers.http.operators.http import HttpOperator", False),
    Import("http: HttpSensor", "from airflow.providers.http.sensors.http import HttpSensor", False),
    Import(
        "slack: SlackNotifier",
        "from airflow.providers.slack.notifications.slack import SlackNotifier",
        False,
    ),
]


def probe(target: Import, cpu_pool: queue.Queue[int | None], importtime: bool = False) -> dict[str, Any]:
    """
    Run one fresh interpreter measuring ``target``; return its figures.

    :param target: The import.
    :param cpu_pool: CPUs free for a probe; one is taken for the run and given back.
    :param importtime: Run with ``-X importtime`` and return the heaviest modules instead of timing.
    """
    source = PROBE.replace("MARK", MARK).replace("TARGET", target.statement)
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", source]
    cpu = cpu_pool.get()
    try:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pin(process.pid, cpu)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError(f"importing {target.label} took over 60 s") from None
    finally:
        cpu_pool.put(cpu)
    if process.returncode != 0:
        raise RuntimeError(f"importing {target.label} failed:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    if importtime:
        result["heaviest"] = heaviest_imports(stderr)
    return result


def heaviest_imports(stderr: str, count: int = 3) -> list[tuple[str, float]]:
    """
    Return the modules with the most self time from ``-X importtime`` output after the mark.

    :param stderr: The interpreter's standard error.
    :param count: How many to return.
    """
    lines = stderr.split(MARK, 1)[-1].splitlines()
    timings: list[tuple[str, float]] = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _cumulative, module = (part.strip() for part in line.split(":", 1)[1].split("|"))
        if self_us.isdigit():
            timings.append((module, int(self_us) / 1000))
    return sorted(timings, key=lambda item: -item[1])[:count]


def packages(modules: list[str]) -> list[str]:
    """Return the non-stdlib packages new modules belong to (``airflow.providers.http``, ``requests``)."""
    names = set()
    for module in modules:
        parts = module.split(".")
        if parts[0] in sys.stdlib_module_names or parts[0].startswith("_"):
            continue
        names.add(".".join(parts[:3]) if parts[0] == "airflow" else parts[0])
    return sorted(names)


def short(module: str) -> str:
    """Return a module name with this provider's package shortened to ``~``, for the table."""
    return module.replace("airflow_provider_whatsinfinity", "~")


def run(*, reps: int = 15, jobs: int = 2) -> Outcome:
    """
    Run the benchmark.

    :param reps: Fresh interpreters per import (the median is reported).
    :param jobs: Interpreters at once, each pinned to its own CPU (at most the CPUs there are).
    """
    outcome = Outcome(NAME, "DAG-parse cost: extra import time on top of airflow.sdk")
    available = cpus()
    jobs = max(1, min(jobs, len(available)))
    cpu_pool: queue.Queue[int | None] = queue.Queue()
    for index in range(jobs):
        cpu_pool.put(available[index] if len(available) > 1 else None)
    outcome.settings = {
        "fresh_interpreters_per_import": reps,
        "parallel_interpreters": jobs,
        "pinned": len(available) > 1,
        "baseline": "import airflow.sdk; from airflow.sdk import DAG, BaseOperator, BaseSensorOperator, "
        "BaseNotifier",
        "measure": "perf_counter around the import statement, inside the interpreter, after the baseline",
        "order": "round-robin over the imports, rotated each round, after one uncounted -X importtime "
        "run each",
    }
    with timed(outcome), ThreadPoolExecutor(max_workers=jobs) as pool:
        # The -X importtime runs come first and are not timed: they also write any missing .pyc files.
        traced = dict(
            zip(IMPORTS, pool.map(lambda t: probe(t, cpu_pool, importtime=True), IMPORTS), strict=True)
        )
        schedule = [
            IMPORTS[(index + round_) % len(IMPORTS)]
            for round_ in range(reps)
            for index in range(len(IMPORTS))
        ]
        samples = list(pool.map(lambda target: (target, probe(target, cpu_pool)), schedule))

    table = Table(
        f"1. DAG-parse cost: extra import time on top of airflow.sdk (median of {reps} fresh interpreters)",
        [
            "import",
            "median ms",
            "min ms",
            "max ms",
            "new modules",
            "heaviest (-X importtime, self ms)",
            "target",
        ],
    )
    baselines = [result["baseline_s"] for _target, result in samples]
    figures: dict[str, Any] = {
        "baseline_import_s": {
            "median": rounded(median(baselines), 4),
            "min": rounded(min(baselines), 4),
            "max": rounded(max(baselines), 4),
        },
        "imports": {},
    }
    for target in IMPORTS:
        extra = [result["extra_s"] for sample_target, result in samples if sample_target == target]
        new_modules = traced[target]["new_modules"]
        heaviest = traced[target]["heaviest"][:2]
        value = median(extra)
        table.add(
            target.label,
            ms(value, 2),
            ms(min(extra), 2),
            ms(max(extra), 2),
            len(new_modules),
            ", ".join(f"{short(module)} {self_ms:.1f}" for module, self_ms in heaviest),
            "<= 10 ms" if target.ours else "reference",
        )
        figures["imports"][target.label] = {
            "statement": target.statement,
            "median_ms": rounded(value * 1000, 3),
            "min_ms": rounded(min(extra) * 1000, 3),
            "max_ms": rounded(max(extra) * 1000, 3),
            "samples_ms": [round(seconds * 1000, 3) for seconds in extra],
            "new_modules": len(new_modules),
            "new_packages": packages(new_modules),
            "heaviest_self_ms": [
                [module, round(self_ms, 2)] for module, self_ms in traced[target]["heaviest"]
            ],
        }
        if target.ours:
            outcome.targets.append(
                Target(f"parse: {target.label}", "<= 10 ms", f"{ms(value, 2)} ms", value <= TARGET_SECONDS)
            )
    table.notes.append(
        f"baseline itself (airflow.sdk + DAG, BaseOperator, BaseSensorOperator, BaseNotifier): "
        f"median {ms(median(baselines), 0)} ms, min {ms(min(baselines), 0)} ms "
        f"over {len(baselines)} interpreters"
    )
    table.notes.append("~ is airflow_provider_whatsinfinity; new modules: count after the baseline")
    for target in IMPORTS:
        table.notes.append(
            f"{target.label}: new packages {', '.join(figures['imports'][target.label]['new_packages'])}"
        )
    outcome.tables.append(table)
    outcome.figures = figures
    return outcome
