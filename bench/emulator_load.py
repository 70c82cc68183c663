"""
Benchmark 5, the emulator: requests per second and latency under 32 concurrent clients.

The emulator runs in its own process pinned to one CPU; a load generator in another process, pinned
to the other CPU, keeps 32 keep-alive HTTP/1.1 connections busy (an asyncio loop on uvloop, raw
requests prepared once, so that the generator costs far less than the server). Each scenario runs
a warm-up second, then ``--seconds`` measured, on a linked session: check-session (``GET
/check-session/{id}``) and dry-run sends (``POST /send`` with ``dryRun: true``). Reported: requests
per second, latency p50/p99/max, non-200 answers, and the CPU each process used (the emulator near
100% of its core means it is the bottleneck, as it should be). There is no target.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import (
    API_KEY,
    LOOPBACK,
    PHONE,
    BenchEmulator,
    Outcome,
    Table,
    rounded,
    run_worker,
    timed,
    worker_cpu,
    worker_main,
)
from bench.load import keepalive_load, run_load

NAME = "emulator_load"
SESSION = "bench-load"
CONCURRENCY = 32


def _request(scenario: str, port: int) -> bytes:
    """Return the raw HTTP/1.1 request of a scenario."""
    host = f"{LOOPBACK}:{port}"
    if scenario == "check-session":
        return (
            f"GET /check-session/{SESSION} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {API_KEY}\r\n"
            "accept: application/json\r\n\r\n"
        ).encode()
    body = json.dumps(
        {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "load test", "dryRun": True}
    ).encode()
    head = (
        f"POST /send HTTP/1.1\r\nHost: {host}\r\nx-api-key: {API_KEY}\r\naccept: application/json\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _load(config: dict[str, Any]) -> dict[str, Any]:
    """Keep ``concurrency`` connections busy through a warm-up and a measured window."""
    result = await keepalive_load(
        config["port"],
        _request(config["scenario"], config["port"]),
        concurrency=config["concurrency"],
        warmup=config["warmup"],
        seconds=config["seconds"],
        emulator_pid=config["emulator_pid"],
        slack=30,
    )
    result["statuses"] = result.pop("measured_statuses")
    del result["all_statuses"]
    return result


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In the load generator process: run one scenario and return the raw figures.

    :param config: ``port``, ``emulator_pid``, ``scenario``, ``concurrency``, ``warmup``, ``seconds``.
    """
    return run_load(_load(config))


def run(*, seconds: float = 10.0, warmup: float = 1.0, concurrency: int = CONCURRENCY) -> Outcome:
    """
    Run the benchmark.

    :param seconds: Measured seconds per scenario.
    :param warmup: Unmeasured seconds before that.
    :param concurrency: Connections kept busy at once.
    """
    outcome = Outcome(NAME, f"The emulator under {concurrency} concurrent clients")
    scenarios = ["check-session", "send dry run"]
    outcome.settings = {
        "concurrency": concurrency,
        "seconds_per_scenario": seconds,
        "warmup_s": warmup,
        "generator": "separate process pinned to its own CPU, raw HTTP/1.1 keep-alive on asyncio streams",
        "emulator": "whatsinfinity-emulator, separate process pinned to the other CPU, --log-level warning",
    }
    results: dict[str, dict[str, Any]] = {}
    with timed(outcome), BenchEmulator(name=f"{NAME}.emulator") as emulator:
        emulator.create_session(SESSION, link=True)
        for scenario in scenarios:
            config = {
                "port": emulator.port,
                "emulator_pid": emulator.pid,
                "scenario": scenario,
                "concurrency": concurrency,
                "warmup": warmup,
                "seconds": seconds,
            }
            results[scenario] = run_worker(
                "bench.emulator_load", config, name=f"{NAME}.worker", cpu=worker_cpu(), timeout=seconds + 90
            )
    table = Table(
        f"5. The emulator under {concurrency} concurrent keep-alive clients ({seconds:g} s per scenario, "
        "load generator in its own process)",
        [
            "scenario",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "non-200",
            "errors",
            "emulator CPU",
            "generator CPU",
        ],
    )
    figures: dict[str, Any] = {}
    for scenario, result in results.items():
        window = result["window_s"]
        rate = result["requests"] / window
        non_200 = sum(count for status, count in result["statuses"].items() if str(status) != "200")
        table.add(
            scenario,
            f"{rate:.0f}",
            f"{result['p50_s'] * 1000:.2f}",
            f"{result['p99_s'] * 1000:.2f}",
            f"{result['max_s'] * 1000:.1f}",
            non_200,
            result["error_count"],
            f"{result['emulator_cpu_s'] / window * 100:.0f}%",
            f"{result['generator_cpu_s'] / window * 100:.0f}%",
        )
        figures[scenario] = {
            "requests": result["requests"],
            "requests_per_s": rounded(rate, 1),
            "latency_ms": {
                "p50": rounded(result["p50_s"] * 1000, 3),
                "p99": rounded(result["p99_s"] * 1000, 3),
                "max": rounded(result["max_s"] * 1000, 3),
            },
            "statuses": result["statuses"],
            "errors": result["error_count"],
            "error_samples": result["errors"],
            "emulator_cpu_share_of_core": rounded(result["emulator_cpu_s"] / window, 3),
            "generator_cpu_share_of_core": rounded(result["generator_cpu_s"] / window, 3),
            "generator_loop": result["loop"],
        }
    table.notes.append(
        "CPU: share of one core over the measured window; the emulator near 100% is the bottleneck"
    )
    outcome.tables.append(table)
    outcome.figures = figures
    return outcome


if __name__ == "__main__":
    worker_main(worker)
