"""
``python -m bench`` (``make bench``): run the benchmarks, print their tables, write their results.

Each benchmark prints its table(s) with the target beside the figures and writes
``bench/results/<name>.json`` (the figures, the settings, the targets and the machine). ``--quick``
runs each one briefly, to check that it works, and writes ``<name>.quick.json.tmp`` instead (ignored
by git). The exit code is 0 when every benchmark ran, even if a target was missed, unless
``--strict`` is given; 1 when a benchmark failed to run.
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from typing import TYPE_CHECKING

from bench import (
    alert_storm,
    bulk_send,
    deferred_sensors,
    emulator_load,
    parse_cost,
    request_overhead,
    state_file,
    throughput,
    worker_time,
)
from bench.common import RESULTS, machine_info, machine_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.common import Outcome, Target

#: name -> (full run, quick run)
BENCHMARKS: dict[str, tuple[Callable[[], Outcome], Callable[[], Outcome]]] = {
    "parse_cost": (
        lambda: parse_cost.run(reps=15),
        lambda: parse_cost.run(reps=2),
    ),
    "request_overhead": (
        lambda: request_overhead.run(rounds=9, seconds=0.5),
        lambda: request_overhead.run(rounds=1, seconds=0.3, cold_reps=3),
    ),
    "bulk_send": (
        lambda: bulk_send.run(runs=2),
        lambda: bulk_send.run(runs=1),
    ),
    "deferred_sensors": (
        lambda: deferred_sensors.run(triggers=500, poke_interval=2.0, steady_seconds=8.0, link=50),
        lambda: deferred_sensors.run(triggers=50, poke_interval=1.0, steady_seconds=2.0, link=10),
    ),
    "deferred_shared": (
        lambda: deferred_sensors.run_shared(
            sessions=10, per_session=100, poke_interval=2.0, steady_seconds=10.0
        ),
        lambda: deferred_sensors.run_shared(
            sessions=3, per_session=20, poke_interval=1.0, steady_seconds=2.0
        ),
    ),
    "emulator_load": (
        lambda: emulator_load.run(seconds=10.0),
        lambda: emulator_load.run(seconds=2.0, warmup=0.5),
    ),
    "state_file": (
        lambda: state_file.run(stored=10_000, seconds=5.0),
        lambda: state_file.run(stored=2_000, seconds=1.0, warmup=0.5),
    ),
    "alert_storm": (
        lambda: alert_storm.run(runs=2, rate_window=2.0),
        lambda: alert_storm.run(runs=1, rate_window=1.0),
    ),
    "throughput": (
        lambda: throughput.run(recipients=400, sessions=(1, 2, 4, 8), rate_window=2.0),
        lambda: throughput.run(recipients=80, sessions=(1, 2, 4), rate_window=1.0),
    ),
    "worker_time": (
        lambda: worker_time.run(recipients=40, rate_window=30.0),
        lambda: worker_time.run(recipients=20, rate_window=10.0, variants=("default",)),
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Return the command line's options. :param argv: Arguments; ``sys.argv`` when ``None``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="short runs to check the benchmarks work")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """
    Run the chosen benchmarks one after the other; return the exit code.

    :param argv: Command line arguments; ``sys.argv`` when ``None``.
    """
    args = parse_args(argv)
    if args.list:
        for name in BENCHMARKS:
            print(name)
        return 0
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 1
    started = time.monotonic()
    machine = machine_info()
    machine["load_average_at_start"] = [round(load, 2) for load in os.getloadavg()]
    print(f"Machine: {machine_line(machine)}")
    print(f"Load average at start: {machine['load_average_at_start']} (other work on the machine adds noise)")
    if args.quick:
        print("Quick mode: short runs, results written as *.quick.json.tmp")
    targets: list[Target] = []
    failed: list[str] = []
    for name in chosen:
        print(f"\n=== {name} " + "=" * max(0, 90 - len(name)), flush=True)
        full, quick = BENCHMARKS[name]
        try:
            outcome = (quick if args.quick else full)()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        outcome.settings["quick"] = args.quick
        print(outcome.render())
        path = outcome.write(machine, suffix=".quick.json.tmp" if args.quick else ".json")
        print(f"({outcome.seconds:.0f} s; wrote {path.relative_to(RESULTS.parents[1])})", flush=True)
        targets += outcome.targets
    _summary(targets, failed, time.monotonic() - started)
    if failed:
        return 1
    if args.strict and not all(target.passed for target in targets):
        return 2
    return 0


def _summary(targets: list[Target], failed: list[str], seconds: float) -> None:
    """Print every target's verdict, the benchmarks that failed to run, and the total time."""
    print("\n=== Summary " + "=" * 80)
    for target in targets:
        print(f"{target.verdict}  {target.what}: {target.value} (target {target.target})")
    for name in failed:
        print(f"ERROR {name}: did not run to the end (traceback above)")
    passed = sum(target.passed for target in targets)
    print(f"{passed} of {len(targets)} targets met; total time {seconds:.0f} s")
