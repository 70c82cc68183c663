"""
The raw HTTP/1.1 keep-alive load generator shared by the emulator benchmarks.

Clients on asyncio streams send one prepared request after another through a warm-up and a measured
window; uvloop runs them when it is installed (plain asyncio works too, with a little more overhead
per request).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from bench.common import LOOPBACK, median, own_cpu_seconds, percentile, process_cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Coroutine


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response with a content-length; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def keepalive_load(
    port: int,
    request: bytes,
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    emulator_pid: int,
    slack: float,
) -> dict[str, Any]:
    """
    Keep ``concurrency`` connections sending ``request`` through a warm-up and a measured window.

    :param port: The emulator's port on loopback.
    :param request: The raw request each client sends again and again.
    :param concurrency: How many keep-alive connections.
    :param warmup: Seconds sent before the window starts.
    :param seconds: Length of the measured window.
    :param emulator_pid: The emulator's process, whose CPU is measured over the window.
    :param slack: Seconds past the window after which the clients are given up on.
    :return: ``window_s``, the ``latencies`` and ``measured_statuses`` of the window, ``all_statuses``
        (warm-up included), ``errors`` (the first five), ``error_count``, and the generator's and the
        emulator's CPU seconds over the window.
    """
    measure_from = time.monotonic() + warmup
    stop_at = measure_from + seconds
    latencies: list[float] = []
    measured: dict[int, int] = {}
    statuses: dict[int, int] = {}
    errors: list[str] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while True:
                sent = time.monotonic()
                if sent >= stop_at:
                    return
                writer.write(request)
                status = await read_response(reader)
                statuses[status] = statuses.get(status, 0) + 1
                if sent >= measure_from:
                    latencies.append(time.monotonic() - sent)
                    measured[status] = measured.get(status, 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            writer.close()

    clients = [asyncio.create_task(client()) for _ in range(concurrency)]
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_at_start = own_cpu_seconds()
    emulator_at_start = process_cpu_seconds(emulator_pid)
    await asyncio.wait_for(asyncio.gather(*clients), timeout=seconds + slack)
    return {
        "window_s": time.monotonic() - measure_from,
        "latencies": latencies,
        "measured_statuses": measured,
        "all_statuses": statuses,
        "errors": errors[:5],
        "error_count": len(errors),
        "generator_cpu_s": own_cpu_seconds() - cpu_at_start,
        "emulator_cpu_s": process_cpu_seconds(emulator_pid) - emulator_at_start,
    }


def run_load(load: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """
    Run a load coroutine on uvloop when installed, and summarise its ``latencies``.

    :param load: A coroutine that returns a dict with ``latencies``.
    :return: Its dict without the raw latencies, with ``loop``, ``requests``, ``p50_s``, ``p99_s``
        and ``max_s``.
    """
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(load)
        result["loop"] = "asyncio"
    else:
        result = uvloop.run(load)
        result["loop"] = "uvloop"
    latencies = result.pop("latencies")
    result.update(
        requests=len(latencies),
        p50_s=median(latencies),
        p99_s=percentile(latencies, 0.99),
        max_s=max(latencies) if latencies else float("nan"),
    )
    return result
