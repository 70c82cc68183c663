"""
Benchmark 2, request overhead: calls per second through ``WhatsInfinityHook`` against the emulator.

``hook.send_text(PHONE, "x", dry_run=True)`` and ``hook.check_session()`` (connection from
``AIRFLOW_CONN_WHATSINFINITY_DEFAULT``), beside a bare keep-alive ``httpx.Client`` making the same
requests (same headers and body, answer parsed as JSON) and beside the http provider's
``HttpHook.run`` (an http connection to the emulator with the x-api-key header in its extra). The
emulator runs in its own process on one CPU, the clients in a worker process on the other. Each
measurement runs for a fixed time (bounded in calls too); the clients take turns, in a rotated order,
for several rounds, and the medians are reported, with the client's own CPU time per call (the
figure that shows client overhead best, since the emulator bounds the throughput of all three).
Also measured: the first call on a new hook or client (connection lookup, client and SSL context).
Target: the hook at least 0.9x bare httpx.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from bench.common import (
    API_KEY,
    PHONE,
    BenchEmulator,
    Outcome,
    Table,
    Target,
    median,
    ms,
    own_cpu_seconds,
    rounded,
    run_worker,
    timed,
    whatsinfinity_conn,
    worker_cpu,
    worker_main,
)

if TYPE_CHECKING:
    from collections.abc import Callable

NAME = "request_overhead"
SESSION = "bench-requests"
TARGET_RATIO = 0.9
OPERATIONS = ["check_session", "send_text dry_run"]
CLIENTS = ["WhatsInfinityHook", "bare httpx.Client", "HttpHook.run (http provider)"]


def _calls(url: str) -> dict[tuple[str, str], Callable[[], object]]:
    """Build the clients and return one call for each (operation, client)."""
    import httpx
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_provider_whatsinfinity.client import USER_AGENT
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

    hook = WhatsInfinityHook()  # whatsinfinity_default, from AIRFLOW_CONN_WHATSINFINITY_DEFAULT
    headers = {"user-agent": USER_AGENT, "accept": "application/json", "x-api-key": API_KEY}
    bare = httpx.Client(base_url=url, headers=headers)
    check_path = f"/check-session/{SESSION}"
    body = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "x", "dryRun": True}
    http_get = HttpHook(method="GET", http_conn_id="bench_http")
    http_post = HttpHook(method="POST", http_conn_id="bench_http")

    def bare_check() -> object:
        response = bare.get(check_path)
        response.raise_for_status()
        return response.json()

    def bare_send() -> object:
        response = bare.post("/send", json=body)
        response.raise_for_status()
        return response.json()

    return {
        ("check_session", CLIENTS[0]): hook.check_session,
        ("send_text dry_run", CLIENTS[0]): lambda: hook.send_text(PHONE, "x", dry_run=True),
        ("check_session", CLIENTS[1]): bare_check,
        ("send_text dry_run", CLIENTS[1]): bare_send,
        ("check_session", CLIENTS[2]): lambda: http_get.run(check_path).json(),
        ("send_text dry_run", CLIENTS[2]): lambda: http_post.run("/send", json=body).json(),
    }


def _cold_calls(url: str) -> dict[str, Callable[[], object]]:
    """Return, per client, one first call on a client built for it (lookup, client, SSL context)."""
    import httpx
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

    def hook_cold() -> object:
        hook = WhatsInfinityHook()
        try:
            return hook.check_session()
        finally:
            hook.close()

    def bare_cold() -> object:
        with httpx.Client(base_url=url, headers={"x-api-key": API_KEY}) as client:
            return client.get(f"/check-session/{SESSION}").json()

    def http_cold() -> object:
        return HttpHook(method="GET", http_conn_id="bench_http").run(f"/check-session/{SESSION}").json()

    return {CLIENTS[0]: hook_cold, CLIENTS[1]: bare_cold, CLIENTS[2]: http_cold}


def _measure(call: Callable[[], object], seconds: float, max_calls: int) -> dict[str, float]:
    """Call ``call`` for ``seconds`` (at most ``max_calls`` times); return calls, wall and CPU time."""
    count = 0
    cpu_start = own_cpu_seconds()
    start = time.perf_counter()
    deadline = start + seconds
    while count < max_calls:
        call()
        count += 1
        if time.perf_counter() >= deadline:
            break
    wall = time.perf_counter() - start
    return {"calls": count, "wall_s": wall, "cpu_s": own_cpu_seconds() - cpu_start}


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In the worker process: warm up, then measure every (operation, client) in rotated rounds.

    :param config: ``url``, ``rounds``, ``seconds``, ``max_calls``, ``cold_reps``.
    """
    calls = _calls(config["url"])
    for call in calls.values():  # warm-up: clients built, connections open, code paths hot
        for _ in range(50):
            call()
    samples: dict[str, list[dict[str, float]]] = {f"{op} | {client}": [] for op, client in calls}
    for round_ in range(config["rounds"]):
        order = CLIENTS[round_ % len(CLIENTS) :] + CLIENTS[: round_ % len(CLIENTS)]
        for operation in OPERATIONS:
            for client in order:
                sample = _measure(calls[(operation, client)], config["seconds"], config["max_calls"])
                samples[f"{operation} | {client}"].append(sample)
    cold: dict[str, list[float]] = {client: [] for client in CLIENTS}
    cold_calls = _cold_calls(config["url"])
    for _ in range(config["cold_reps"]):
        for client, call in cold_calls.items():
            start = time.perf_counter()
            call()
            cold[client].append(time.perf_counter() - start)
    return {"samples": samples, "cold_s": cold}


def run(*, rounds: int = 9, seconds: float = 0.5, max_calls: int = 20_000, cold_reps: int = 15) -> Outcome:
    """
    Run the benchmark.

    :param rounds: Rounds of measurements; each measures every (operation, client) once.
    :param seconds: Length of one measurement.
    :param max_calls: Most calls in one measurement.
    :param cold_reps: First calls on a new hook or client, per client.
    """
    outcome = Outcome(NAME, "Request overhead: hook calls per second against the emulator")
    outcome.settings = {
        "rounds": rounds,
        "seconds_per_measurement": seconds,
        "max_calls_per_measurement": max_calls,
        "cold_reps": cold_reps,
        "emulator": "separate process, --rate-limit 1000000, pinned to its own CPU",
        "clients": "one worker process pinned to the other CPU; sequential calls, one connection",
        "bare_httpx": "httpx.Client keep-alive, same headers and JSON body, raise_for_status + .json()",
        "http_hook": "HttpHook(method=GET|POST, http_conn_id=bench_http).run(endpoint[, json=body]).json()",
    }
    with timed(outcome), BenchEmulator(name=f"{NAME}.emulator") as emulator:
        emulator.create_session(SESSION, link=True)
        http_conn = {"conn_type": "http", "host": emulator.url, "extra": {"x-api-key": API_KEY}}
        env = {
            "AIRFLOW_CONN_WHATSINFINITY_DEFAULT": whatsinfinity_conn(emulator.url, SESSION),
            "AIRFLOW_CONN_BENCH_HTTP": json.dumps(http_conn),
        }
        config = {
            "url": emulator.url,
            "rounds": rounds,
            "seconds": seconds,
            "max_calls": max_calls,
            "cold_reps": cold_reps,
        }
        result = run_worker(
            "bench.request_overhead", config, name=f"{NAME}.worker", env=env, cpu=worker_cpu(), timeout=300
        )

    table = Table(
        f"2. Request overhead through the hook (emulator in its own process; median of {rounds} rounds "
        f"x {seconds:g} s per client; ratio: median of the per-round ratios)",
        ["operation | client", "calls/s", "µs/call", "client CPU µs/call", "vs bare httpx", "target"],
    )
    figures: dict[str, Any] = {"warm": {}, "cold_first_call_ms": {}}
    rates: dict[str, float] = {}
    per_rounds: dict[str, list[float]] = {}
    for operation in OPERATIONS:
        for client in CLIENTS:
            key = f"{operation} | {client}"
            samples = result["samples"][key]
            per_round = [sample["calls"] / sample["wall_s"] for sample in samples]
            cpu_per_call = [sample["cpu_s"] / sample["calls"] for sample in samples]
            rates[key] = median(per_round)
            per_rounds[key] = per_round
            figures["warm"][key] = {
                "calls_per_s_median": rounded(rates[key], 1),
                "calls_per_s_rounds": [round(rate, 1) for rate in per_round],
                "client_cpu_us_per_call_median": rounded(median(cpu_per_call) * 1e6, 1),
                "calls_total": sum(int(sample["calls"]) for sample in samples),
            }
        bare = per_rounds[f"{operation} | {CLIENTS[1]}"]
        for client in CLIENTS:
            key = f"{operation} | {client}"
            # Paired: each round measured this client and bare httpx back to back.
            ratios = [mine / theirs for mine, theirs in zip(per_rounds[key], bare, strict=True)]
            ratio = median(ratios)
            figures["warm"][key]["ratio_vs_bare_httpx"] = rounded(ratio, 3)
            figures["warm"][key]["ratio_vs_bare_httpx_rounds"] = [round(value, 3) for value in ratios]
            table.add(
                key,
                f"{rates[key]:.0f}",
                f"{1e6 / rates[key]:.0f}",
                f"{figures['warm'][key]['client_cpu_us_per_call_median']:.0f}",
                f"{ratio:.2f}x",
                ">= 0.90x" if client == CLIENTS[0] else "reference",
            )
            if client == CLIENTS[0]:
                outcome.targets.append(
                    Target(
                        f"requests: hook {operation} vs bare httpx",
                        ">= 0.90x",
                        f"{ratio:.2f}x",
                        ratio >= TARGET_RATIO,
                    )
                )
    cold_table = Table(
        f"2b. First call on a new hook or client (median of {cold_reps}; connection lookup, client, "
        "SSL context, TCP connect, one check-session)",
        ["client", "median ms", "min ms", "max ms"],
    )
    for client in CLIENTS:
        values = result["cold_s"][client]
        figures["cold_first_call_ms"][client] = {
            "median": rounded(median(values) * 1000, 2),
            "min": rounded(min(values) * 1000, 2),
            "max": rounded(max(values) * 1000, 2),
        }
        cold_table.add(client, ms(median(values), 2), ms(min(values), 2), ms(max(values), 2))
    cold_table.notes.append(
        "httpx.Client()/AsyncClient() builds an SSL context (certifi's CA bundle) even for http:// URLs; "
        "requests only builds one for https"
    )
    outcome.tables += [table, cold_table]
    outcome.figures = figures
    return outcome


if __name__ == "__main__":
    worker_main(worker)
