"""
Benchmark 6, the state file: sends per second with and without ``--state-file``, 10,000 messages stored.

Two emulators, one after the other, each in its own process pinned to one CPU: one keeping everything
in memory, one with ``--state-file`` in a fresh temporary directory. A load generator in another
process, pinned to the other CPU, first stores ``stored`` messages through real sends on a linked
session (each delivered, so each kept in the outbox), then keeps ``concurrency`` keep-alive
connections sending for a warm-up second and ``seconds`` measured. Reported: sends per second,
latency p50/p99/max (the max shows a snapshot being rewritten), the emulator's CPU, and how many
messages the outbox holds at the end against the 200 answers (none lost). Target: persisting costs
at most half the throughput, whatever is stored already.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    API_KEY,
    LOOPBACK,
    PHONE,
    BenchEmulator,
    Outcome,
    Table,
    Target,
    rounded,
    run_worker,
    timed,
    worker_cpu,
    worker_main,
)
from bench.load import keepalive_load, read_response, run_load

NAME = "state_file"
SESSION = "bench-state"
CONCURRENCY = 16
#: Sends per second with --state-file, as a share of in memory, that the target asks for.
MIN_SHARE = 0.5


def _send_request(port: int) -> bytes:
    """Return one raw HTTP/1.1 text send, delivered at once on a linked session."""
    body = json.dumps(
        {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "state file benchmark message"}
    ).encode()
    head = (
        f"POST /send HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nx-api-key: {API_KEY}\r\n"
        f"accept: application/json\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _load(config: dict[str, Any]) -> dict[str, Any]:
    """Store ``stored`` messages, then keep ``concurrency`` connections sending through a measured window."""
    port: int = config["port"]
    request = _send_request(port)
    to_store: int = config["stored"]
    stored: dict[int, int] = {}

    async def store() -> None:
        nonlocal to_store
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while to_store > 0:
                to_store -= 1
                writer.write(request)
                status = await read_response(reader)
                stored[status] = stored.get(status, 0) + 1
        finally:
            writer.close()

    seeding_started = time.monotonic()
    await asyncio.gather(*(store() for _ in range(config["concurrency"])))
    seeding_s = time.monotonic() - seeding_started
    result = await keepalive_load(
        port,
        request,
        concurrency=config["concurrency"],
        warmup=config["warmup"],
        seconds=config["seconds"],
        emulator_pid=config["emulator_pid"],
        slack=60,
    )
    result.update(
        seeding_s=seeding_s,
        stored_at_start=stored.get(200, 0),
        answered_200=stored.get(200, 0) + result.pop("all_statuses").get(200, 0),
    )
    return result


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In the load generator process: store messages, measure sends, return the raw figures.

    :param config: ``port``, ``emulator_pid``, ``stored``, ``concurrency``, ``warmup``, ``seconds``.
    """
    result = run_load(_load(config))
    result["sends"] = result.pop("requests")
    return result


def _scenario(options: list[str], config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the load generator against one fresh emulator; add what the emulator kept."""
    with BenchEmulator(options=options, name=f"{NAME}.emulator") as emulator:
        emulator.create_session(SESSION, link=True)
        result = run_worker(
            "bench.state_file",
            {**config, "port": emulator.port, "emulator_pid": emulator.pid},
            name=f"{NAME}.worker",
            cpu=worker_cpu(),
            timeout=timeout,
        )
        result["outbox"] = len(emulator.outbox(SESSION))
    return result


def run(
    *, stored: int = 10_000, seconds: float = 5.0, warmup: float = 1.0, concurrency: int = CONCURRENCY
) -> Outcome:
    """
    Run the benchmark.

    :param stored: Messages stored through sends before measuring.
    :param seconds: Measured seconds per emulator.
    :param warmup: Unmeasured seconds before that.
    :param concurrency: Connections sending at once.
    """
    outcome = Outcome(NAME, f"Sends per second with and without --state-file, {stored} messages stored")
    outcome.settings = {
        "stored_before_measuring": stored,
        "seconds_per_scenario": seconds,
        "warmup_s": warmup,
        "concurrency": concurrency,
        "send": "POST /send, type text, on a linked session: each one delivered and kept in the outbox",
        "generator": "separate process pinned to its own CPU, raw HTTP/1.1 keep-alive on asyncio streams",
        "emulator": "whatsinfinity-emulator, separate process pinned to the other CPU, --log-level warning",
    }
    config = {"stored": stored, "concurrency": concurrency, "warmup": warmup, "seconds": seconds}
    timeout = seconds + warmup + 120 + stored / 200
    results: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    with timed(outcome), tempfile.TemporaryDirectory(prefix="whatsinfinity-bench-state-") as scratch:
        state = Path(scratch) / "emulator.json"
        results["in memory"] = _scenario([], config, timeout)
        results["--state-file"] = _scenario(["--state-file", str(state)], config, timeout)
        sizes = {path.name: path.stat().st_size for path in Path(scratch).iterdir()}
    table = Table(
        f"6. Sends per second with {stored} messages already stored, with and without --state-file "
        f"({concurrency} keep-alive clients, {seconds:g} s measured each)",
        [
            "emulator",
            "stored first",
            "sends/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "non-200",
            "errors",
            "emulator CPU",
            "lost",
        ],
    )
    figures: dict[str, Any] = {}
    for scenario, result in results.items():
        window = result["window_s"]
        rate = result["sends"] / window
        non_200 = sum(count for status, count in result["measured_statuses"].items() if str(status) != "200")
        lost = result["answered_200"] - result["outbox"]
        table.add(
            scenario,
            result["stored_at_start"],
            f"{rate:.0f}",
            f"{result['p50_s'] * 1000:.2f}",
            f"{result['p99_s'] * 1000:.2f}",
            f"{result['max_s'] * 1000:.1f}",
            non_200,
            result["error_count"],
            f"{result['emulator_cpu_s'] / window * 100:.0f}%",
            lost,
        )
        figures[scenario] = {
            "stored_at_start": result["stored_at_start"],
            "seeding_s": rounded(result["seeding_s"], 2),
            "sends": result["sends"],
            "sends_per_s": rounded(rate, 1),
            "latency_ms": {
                "p50": rounded(result["p50_s"] * 1000, 3),
                "p99": rounded(result["p99_s"] * 1000, 3),
                "max": rounded(result["max_s"] * 1000, 3),
            },
            "statuses": result["measured_statuses"],
            "errors": result["error_count"],
            "error_samples": result["errors"],
            "emulator_cpu_share_of_core": rounded(result["emulator_cpu_s"] / window, 3),
            "outbox_at_end": result["outbox"],
            "lost": lost,
        }
    figures["files_at_end_bytes"] = sizes
    table.notes.append(
        "seeding: "
        + ", ".join(f"{name} stored {stored} in {figures[name]['seeding_s']} s" for name in results)
    )
    table.notes.append(
        "files at the end: "
        + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(sizes.items()))
    )
    table.notes.append("lost: 200 answers minus messages in the outbox at the end")
    outcome.tables.append(table)
    outcome.figures = figures
    memory, persisted = (figures[name]["sends_per_s"] or 0.0 for name in results)
    share = persisted / memory if memory else 0.0
    outcome.targets.append(
        Target(
            f"sends/s with --state-file, {stored} stored, as a share of in memory; none lost",
            f">= {MIN_SHARE:.1f}x",
            f"{share:.2f}x",
            share >= MIN_SHARE and all(figures[name]["lost"] == 0 for name in results),
        )
    )
    return outcome


if __name__ == "__main__":
    worker_main(worker)
