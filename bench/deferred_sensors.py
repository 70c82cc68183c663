"""
Benchmark 4, deferred sensors: 500 ``WhatsInfinitySessionReadyTrigger`` waiting in one event loop.

The controller creates 500 sessions in the emulator (status ``qr``: not ready) and passes 500
``AIRFLOW_CONN_WI_BENCH_NNN`` connections to a worker process, which runs one trigger per
connection in one asyncio event loop, as a triggerer does, with ``poke_interval`` 2 s. It measures:

- startup: the time and CPU until every trigger has finished its first check-session, and how long
  the event loop was blocked meanwhile (lag of a 50 ms ticker);
- memory per waiting trigger: the RSS delta once all of them wait (and, in a second run with
  ``tracemalloc`` on, the Python heap per trigger and where it was allocated);
- CPU per waiting trigger, over a steady window, and per check-session poll;
- the delay from a session being linked (``POST /_emulator/sessions/{id}/link``, from a thread, 50
  sessions 100 ms apart) to its trigger's ``ready`` event: median, p95, max. With polling every
  ``poke_interval`` the delay is expected to be uniform between 0 and ``poke_interval``.

A third small worker measures what one ``httpx.AsyncClient`` costs (it builds an SSL context
loading certifi's CA bundle, even for http:// URLs), beside one sharing an SSL context.

Counting polls needs a hook into the provider: the worker wraps
``AsyncWhatsInfinityClient.check_session`` (a counter around the original, at run time; no file is
changed). There is no target: the figures are reported as they are.

Benchmark 4c, ``deferred_shared`` (:func:`run_shared`): 1,000 triggers on 10 sessions, 100 per session
(one connection per session), run twice in one benchmark: with the shared check off
(``shared_check.enabled = False`` in that worker), then on. It reports check-session requests per poll
interval from the emulator's request log, CPU on both sides, loop lag, memory, sockets, and the delay
from each session's link to each of its triggers' events.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    API_KEY,
    BenchEmulator,
    Outcome,
    Table,
    Target,
    median,
    ms,
    own_cpu_seconds,
    percentile,
    process_cpu_seconds,
    process_rss_bytes,
    rounded,
    run_worker,
    timed,
    whatsinfinity_conn,
    worker_cpu,
    worker_main,
)

if TYPE_CHECKING:
    from collections.abc import Callable

NAME = "deferred_sensors"
SESSION_PREFIX = "bench-trig-"
CONN_PREFIX = "wi_bench_"
LAG_TICK = 0.05


def session_id(index: int) -> str:
    """Return the session of trigger ``index``."""
    return f"{SESSION_PREFIX}{index:03d}"


def conn_id(index: int) -> str:
    """Return the connection id of trigger ``index``."""
    return f"{CONN_PREFIX}{index:03d}"


def open_sockets() -> int:
    """Return how many sockets this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


class _Polls:
    """Counts finished check-session calls of the async client, and when every session had one."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.sessions: set[str] = set()
        self.all_first_at: float | None = None
        self.phase = "startup"
        self.latencies: dict[str, list[float]] = {}

    def install(self) -> None:
        """Wrap ``AsyncWhatsInfinityClient.check_session`` with a counter (this process only)."""
        from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient

        original = AsyncWhatsInfinityClient.check_session
        polls = self

        async def counted(client: AsyncWhatsInfinityClient) -> Any:
            started = time.monotonic()
            try:
                return await original(client)
            finally:
                polls.latencies.setdefault(polls.phase, []).append(time.monotonic() - started)
                polls.count += 1
                if polls.all_first_at is None:
                    polls.sessions.add(client.session_id)
                    if len(polls.sessions) >= polls.expected:
                        polls.all_first_at = time.monotonic()

        setattr(AsyncWhatsInfinityClient, "check_session", counted)  # noqa: B010


class _LagMonitor:
    """A ticker that records how late the event loop wakes it, per phase."""

    def __init__(self) -> None:
        self.phase = "startup"
        self.lags: dict[str, list[float]] = {}
        self.stopped = False

    async def run(self, deadline: float) -> None:
        """Tick every 50 ms until stopped or ``deadline``. :param deadline: ``time.monotonic()`` limit."""
        while not self.stopped and time.monotonic() < deadline:
            started = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            self.lags.setdefault(self.phase, []).append(time.monotonic() - started - LAG_TICK)


def _link_sessions(url: str, sessions: list[str], gap: float) -> list[dict[str, Any]]:
    """From a thread: link each session ``gap`` seconds after the previous one; record when."""
    from airflow_provider_whatsinfinity.emulator.control import EmulatorControl

    records = []
    with EmulatorControl(url) as emulator:
        start = time.monotonic()
        for index, session in enumerate(sessions):
            time.sleep(max(0.0, start + index * gap - time.monotonic()))
            sent = time.monotonic()
            emulator.link(session)
            records.append({"session": session, "sent": sent, "answered": time.monotonic()})
    return records


async def _wait_one(trigger: Any, index: int, events: dict[int, tuple[float, dict[str, Any]]]) -> None:
    """Run one trigger as the triggerer does, until its first event; record when it came."""
    run = trigger.run()
    try:
        event = await run.__anext__()
        events[index] = (time.monotonic(), dict(event.payload))
    finally:
        await run.aclose()


async def _triggers(config: dict[str, Any]) -> dict[str, Any]:
    """The trigger worker's event loop: see the module's docstring."""
    import tracemalloc

    from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionReadyTrigger

    count: int = config["triggers"]
    poke: float = config["poke_interval"]
    trace: bool = config["tracemalloc"]
    emulator_pid: int = config["emulator_pid"]
    polls = _Polls(count)
    polls.install()
    monitor = _LagMonitor()
    hard_deadline = time.monotonic() + config["max_seconds"]
    figures: dict[str, Any] = {"triggers": count}

    gc.collect()
    rss_before = process_rss_bytes()
    sockets_before = open_sockets()
    if trace:
        tracemalloc.start()
    cpu_start = own_cpu_seconds()
    started = time.monotonic()
    monitor_task = asyncio.create_task(monitor.run(hard_deadline))
    events: dict[int, tuple[float, dict[str, Any]]] = {}
    triggers = [
        WhatsInfinitySessionReadyTrigger(
            whatsinfinity_conn_id=conn_id(index), poke_interval=poke, timeout_at=time.time() + 600
        )
        for index in range(count)
    ]
    tasks = [asyncio.create_task(_wait_one(trigger, index, events)) for index, trigger in enumerate(triggers)]
    try:
        while polls.all_first_at is None and time.monotonic() < hard_deadline:
            await asyncio.sleep(0.05)
        if polls.all_first_at is None:
            raise RuntimeError(f"only {len(polls.sessions)} of {count} triggers polled before the deadline")
        figures["startup_s"] = polls.all_first_at - started
        figures["startup_cpu_s"] = own_cpu_seconds() - cpu_start
        figures["startup_lag_max_s"] = max(monitor.lags.get("startup", [0.0]))
        figures["events_before_link"] = len(events)

        monitor.phase = polls.phase = "settle"
        await asyncio.sleep(poke)  # every trigger is now past its first poll and sleeping
        gc.collect()
        figures["rss_delta_bytes"] = process_rss_bytes() - rss_before
        figures["sockets_open"] = open_sockets() - sockets_before
        if trace:
            figures.update(_traced_memory(tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()))
            tracemalloc.stop()
            return figures

        monitor.phase = polls.phase = "steady"
        cpu_a, polls_a, emulator_a, at_a = (
            own_cpu_seconds(),
            polls.count,
            process_cpu_seconds(emulator_pid),
            time.monotonic(),
        )
        await asyncio.sleep(config["steady_seconds"])
        cpu_b, polls_b, emulator_b, at_b = (
            own_cpu_seconds(),
            polls.count,
            process_cpu_seconds(emulator_pid),
            time.monotonic(),
        )
        figures["steady_s"] = at_b - at_a
        figures["steady_cpu_s"] = cpu_b - cpu_a
        figures["steady_polls"] = polls_b - polls_a
        figures["steady_emulator_cpu_s"] = emulator_b - emulator_a
        steady_lags = monitor.lags.get("steady", [0.0])
        figures["steady_lag_p99_s"] = percentile(steady_lags, 0.99)
        figures["steady_lag_max_s"] = max(steady_lags)
        figures["steady_poll_latency_s"] = _spread(polls.latencies.get("steady", []))

        monitor.phase = polls.phase = "link"
        linked = [index * (count // config["link"]) for index in range(config["link"])]
        records = await asyncio.to_thread(
            _link_sessions, config["url"], [session_id(index) for index in linked], config["link_gap"]
        )
        deadline = time.monotonic() + 2 * poke + 5
        while not all(index in events for index in linked) and time.monotonic() < min(
            deadline, hard_deadline
        ):
            await asyncio.sleep(0.02)
        delays, statuses = [], []
        for index, record in zip(linked, records, strict=True):
            if index in events:
                when, payload = events[index]
                delays.append(when - record["sent"])
                statuses.append(payload.get("outcome"))
        figures["link_request_s_median"] = median([r["answered"] - r["sent"] for r in records])
        figures["linked"] = len(linked)
        figures["events_of_linked"] = len(delays)
        figures["ready_events"] = statuses.count("ready")
        figures["events_of_unlinked"] = len(set(events) - set(linked))
        figures["delays_s"] = delays
        figures["link_lag_max_s"] = max(monitor.lags.get("link", [0.0]))
        figures["link_poll_latency_s"] = _spread(polls.latencies.get("link", []))
        figures["startup_poll_latency_s"] = _spread(polls.latencies.get("startup", []))
    finally:
        monitor.stopped = True
        cleanup_started = time.monotonic()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, monitor_task, return_exceptions=True)
        figures["cancel_and_close_s"] = time.monotonic() - cleanup_started
    return figures


def _spread(values: list[float]) -> dict[str, float]:
    """Return the median, p99 and max of some durations (zeros when there are none)."""
    if not values:
        return {"median": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    return {
        "median": median(values),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "count": len(values),
    }


def _traced_memory(snapshot: Any, traced: tuple[int, int]) -> dict[str, Any]:
    """Return the Python heap figures of a ``tracemalloc`` snapshot: total and the top allocation sites."""
    import tracemalloc

    ignore = [
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, tracemalloc.__file__),
    ]
    sites = []
    for stat in snapshot.filter_traces(ignore).statistics("lineno")[:8]:
        frame = stat.traceback[0]
        path = Path(frame.filename)
        parts = path.parts
        where = "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else path.name
        if "airflow_provider_whatsinfinity" in parts:
            where = "/".join(parts[parts.index("airflow_provider_whatsinfinity") :])
        sites.append({"where": f"{where}:{frame.lineno}", "bytes": stat.size, "blocks": stat.count})
    return {"traced_bytes": traced[0], "traced_peak_bytes": traced[1], "traced_top": sites}


def _client_cost(config: dict[str, Any]) -> dict[str, Any]:
    """What one async client costs: the provider's, and httpx's with its own or a shared SSL context."""
    return asyncio.run(_client_cost_in_loop(config))


async def _client_cost_in_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Build the clients inside a running event loop, as a trigger does."""
    import httpx

    from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient

    count: int = config["clients"]
    url: str = config["url"]
    shared = httpx.create_ssl_context()

    def provider_client() -> object:
        client = AsyncWhatsInfinityClient(session_id="bench", api_key=API_KEY, base_url=url)
        return client._http  # the httpx.AsyncClient it uses, built (or found) on first use

    makers: dict[str, Callable[[], object]] = {
        "AsyncWhatsInfinityClient (as a trigger's hook builds it)": provider_client,
        "httpx.AsyncClient() (default: own SSL context)": lambda: httpx.AsyncClient(base_url=url),
        "httpx.AsyncClient(verify=shared SSLContext)": lambda: httpx.AsyncClient(base_url=url, verify=shared),
    }
    figures = {}
    kept: list[object] = []
    for label, make in makers.items():
        gc.collect()
        rss, cpu = process_rss_bytes(), own_cpu_seconds()
        kept += [make() for _ in range(count)]
        figures[label] = {
            "rss_bytes_each": (process_rss_bytes() - rss) / count,
            "cpu_s_each": (own_cpu_seconds() - cpu) / count,
        }
    return figures


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In a worker process: run the triggers, or measure the client cost.

    :param config: ``mode`` (``triggers`` or ``clients``) and its settings.
    """
    if config["mode"] == "clients":
        return _client_cost(config)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if config["mode"] == "shared":
        return asyncio.run(_shared_triggers(config))
    return asyncio.run(_triggers(config))


def run(
    *, triggers: int = 500, poke_interval: float = 2.0, steady_seconds: float = 8.0, link: int = 50
) -> Outcome:
    """
    Run the benchmark.

    :param triggers: Triggers waiting at once, each on its own connection and session.
    :param poke_interval: Their ``poke_interval`` in seconds.
    :param steady_seconds: Length of the window in which CPU is measured.
    :param link: Sessions linked (one every 100 ms) to measure the delay to the event.
    """
    outcome = Outcome(NAME, f"{triggers} deferred session-ready triggers in one event loop")
    link_gap = 0.1
    outcome.settings = {
        "triggers": triggers,
        "poke_interval_s": poke_interval,
        "steady_window_s": steady_seconds,
        "linked": link,
        "link_gap_s": link_gap,
        "event_loop": "asyncio (default policy), one worker process pinned to its own CPU",
        "emulator": "separate process, pinned to the other CPU; sessions in status qr until linked",
        "connections": f"{triggers} AIRFLOW_CONN_WI_BENCH_NNN environment variables, one session each",
        "poll_counting": "AsyncWhatsInfinityClient.check_session wrapped with a counter in the worker",
    }
    config = {
        "mode": "triggers",
        "triggers": triggers,
        "poke_interval": poke_interval,
        "steady_seconds": steady_seconds,
        "link": link,
        "link_gap": link_gap,
        "max_seconds": 120,
    }
    with timed(outcome), BenchEmulator(name=f"{NAME}.emulator") as emulator:
        env = {
            f"AIRFLOW_CONN_{conn_id(i).upper()}": whatsinfinity_conn(emulator.url, session_id(i))
            for i in range(triggers)
        }
        config |= {"url": emulator.url, "emulator_pid": emulator.pid}

        def fresh_sessions() -> None:
            emulator.reset()
            for index in range(triggers):
                emulator.create_session(session_id(index))

        fresh_sessions()
        main = run_worker(
            "bench.deferred_sensors",
            config | {"tracemalloc": False},
            name=f"{NAME}.worker",
            env=env,
            cpu=worker_cpu(),
            timeout=180,
        )
        log_lines = sum(
            1 for _ in (Path(emulator.log_path).parent / f"{NAME}.worker.log.tmp").open(errors="replace")
        )
        fresh_sessions()
        traced = run_worker(
            "bench.deferred_sensors",
            config | {"tracemalloc": True},
            name=f"{NAME}.traced",
            env=env,
            cpu=worker_cpu(),
            timeout=180,
        )
        clients = run_worker(
            "bench.deferred_sensors",
            {"mode": "clients", "clients": 50, "url": emulator.url},
            name=f"{NAME}.clients",
            cpu=worker_cpu(),
            timeout=120,
        )
    return _report(outcome, main, traced, clients, log_lines)


def _report(
    outcome: Outcome, main: dict[str, Any], traced: dict[str, Any], clients: dict[str, Any], log_lines: int
) -> Outcome:
    """Fill in the tables and figures from the workers' results."""
    count = main["triggers"]
    poke = outcome.settings["poke_interval_s"]
    delays = main["delays_s"]
    steady_cpu_per_s = main["steady_cpu_s"] / main["steady_s"]
    table = Table(
        f"4. Deferred sensors: {count} WhatsInfinitySessionReadyTrigger in one event loop, "
        f"poke_interval {poke:g} s",
        ["measure", "value", "per waiting trigger", "expected / note"],
    )

    def latency(phase: str) -> tuple[str, str]:
        spread = main[f"{phase}_poll_latency_s"]
        figures = f"{ms(spread['median'], 1)} / {ms(spread['p99'], 1)} / {ms(spread['max'], 1)} ms"
        return figures, f"{spread['count']} polls"

    rows: list[tuple[object, ...]] = [
        (
            "startup: until every first poll is done",
            f"{main['startup_s']:.2f} s",
            f"{ms(main['startup_s'] / count, 2)} ms",
            "all triggers started at once",
        ),
        (
            "startup: CPU",
            f"{main['startup_cpu_s']:.2f} s",
            f"{ms(main['startup_cpu_s'] / count, 2)} ms",
            "connection, hook, client, first poll",
        ),
        (
            "startup: event loop blocked (max lag)",
            f"{ms(main['startup_lag_max_s'], 0)} ms",
            "",
            "lag of a 50 ms ticker",
        ),
        ("startup: check-session p50 / p99 / max", latency("startup")[0], "", latency("startup")[1]),
        (
            "memory: RSS delta, all waiting",
            f"{main['rss_delta_bytes'] / 2**20:.1f} MiB",
            f"{main['rss_delta_bytes'] / count / 1024:.0f} KiB",
            "",
        ),
        (
            "memory: Python heap (tracemalloc run)",
            f"{traced['traced_bytes'] / 2**20:.1f} MiB",
            f"{traced['traced_bytes'] / count / 1024:.1f} KiB",
            "native (OpenSSL) memory is not traced",
        ),
        (
            "sockets open while waiting",
            main["sockets_open"],
            f"{main['sockets_open'] / count:.2f}",
            "keep-alive connections to the emulator",
        ),
        (
            "steady: polls/s",
            f"{main['steady_polls'] / main['steady_s']:.0f}",
            "",
            f"{count}/{poke:g} s = {count / poke:.0f}",
        ),
        (
            "steady: CPU",
            f"{steady_cpu_per_s * 100:.1f}% of a core",
            f"{steady_cpu_per_s / count * 1e6:.0f} µs/s",
            "",
        ),
        (
            "steady: CPU per poll",
            f"{ms(main['steady_cpu_s'] / max(main['steady_polls'], 1), 3)} ms",
            "",
            "request, parse, log line, sleep",
        ),
        ("steady: check-session p50 / p99 / max", latency("steady")[0], "", latency("steady")[1]),
        (
            "steady: event loop lag p99 / max",
            f"{ms(main['steady_lag_p99_s'], 1)} / {ms(main['steady_lag_max_s'], 1)} ms",
            "",
            "",
        ),
        (
            "steady: emulator CPU",
            f"{main['steady_emulator_cpu_s'] / main['steady_s'] * 100:.1f}% of a core",
            "",
            "the emulator is not the bottleneck",
        ),
        ("link: check-session p50 / p99 / max", latency("link")[0], "", latency("link")[1]),
        (
            f"link -> event delay median ({main['events_of_linked']}/{main['linked']} events)",
            f"{median(delays):.2f} s",
            "",
            f"uniform 0..{poke:g} s: {poke / 2:.1f} s",
        ),
        (
            "link -> event delay p95 / max",
            f"{percentile(delays, 0.95):.2f} / {max(delays):.2f} s",
            "",
            f"{0.95 * poke:.1f} / {poke:g} s (+ one request)",
        ),
        (
            "events: ready / from unlinked sessions",
            f"{main['ready_events']} / {main['events_of_unlinked']}",
            "",
            f"{main['linked']} / 0",
        ),
        ("cancel and close the other triggers", f"{main['cancel_and_close_s']:.2f} s", "", ""),
    ]
    for row in rows:
        table.add(*row)
    table.notes.append(f"worker log: {log_lines} lines (a trigger logs at INFO when its status changes)")
    table.notes.append("Python heap, top allocation sites (tracemalloc, all triggers):")
    for site in traced["traced_top"][:6]:
        table.notes.append(
            f"  {site['bytes'] / 2**20:7.2f} MiB in {site['blocks']:>6} blocks  {site['where']}"
        )

    cost = Table(
        "4b. What one async HTTP client costs (50 built, kept alive)",
        ["client", "RSS KiB each", "CPU ms each"],
    )
    for label, figures in clients.items():
        cost.add(label, f"{figures['rss_bytes_each'] / 1024:.0f}", f"{figures['cpu_s_each'] * 1000:.2f}")
    outcome.tables += [table, cost]
    outcome.figures = {
        "startup_s": rounded(main["startup_s"], 3),
        "startup_cpu_s": rounded(main["startup_cpu_s"], 3),
        "startup_lag_max_ms": rounded(main["startup_lag_max_s"] * 1000, 1),
        "rss_delta_mib": rounded(main["rss_delta_bytes"] / 2**20, 2),
        "rss_per_trigger_kib": rounded(main["rss_delta_bytes"] / count / 1024, 1),
        "traced_python_heap_mib": rounded(traced["traced_bytes"] / 2**20, 2),
        "traced_per_trigger_kib": rounded(traced["traced_bytes"] / count / 1024, 2),
        "traced_top_sites": traced["traced_top"],
        "tracemalloc_run_rss_delta_mib": rounded(traced["rss_delta_bytes"] / 2**20, 2),
        "sockets_open": main["sockets_open"],
        "steady_polls_per_s": rounded(main["steady_polls"] / main["steady_s"], 1),
        "steady_cpu_share_of_core": rounded(steady_cpu_per_s, 4),
        "steady_cpu_us_per_trigger_per_s": rounded(steady_cpu_per_s / count * 1e6, 1),
        "steady_cpu_ms_per_poll": rounded(main["steady_cpu_s"] / max(main["steady_polls"], 1) * 1000, 3),
        "steady_emulator_cpu_share_of_core": rounded(main["steady_emulator_cpu_s"] / main["steady_s"], 4),
        "steady_lag_p99_ms": rounded(main["steady_lag_p99_s"] * 1000, 2),
        "steady_lag_max_ms": rounded(main["steady_lag_max_s"] * 1000, 2),
        "link_to_event_s": {
            "median": rounded(median(delays), 3),
            "p95": rounded(percentile(delays, 0.95), 3),
            "max": rounded(max(delays), 3),
            "min": rounded(min(delays), 3),
            "samples": [round(delay, 3) for delay in sorted(delays)],
        },
        "check_session_latency_ms": {
            phase: {
                key: (rounded(value * 1000, 2) if key != "count" else value)
                for key, value in main[f"{phase}_poll_latency_s"].items()
            }
            for phase in ("startup", "steady", "link")
        },
        "link_request_ms_median": rounded(main["link_request_s_median"] * 1000, 2),
        "linked": main["linked"],
        "events_of_linked": main["events_of_linked"],
        "ready_events": main["ready_events"],
        "events_of_unlinked": main["events_of_unlinked"],
        "cancel_and_close_s": rounded(main["cancel_and_close_s"], 3),
        "worker_log_lines": log_lines,
        "client_cost": {
            label: {
                "rss_kib_each": rounded(figures["rss_bytes_each"] / 1024, 1),
                "cpu_ms_each": rounded(figures["cpu_s_each"] * 1000, 3),
            }
            for label, figures in clients.items()
        },
    }
    return outcome


# --- 4c. The shared check: many triggers on few sessions ------------------------------------------

SHARED_NAME = "deferred_shared"
SHARED_SESSION_PREFIX = "bench-shared-"
SHARED_CONN_PREFIX = "wi_shared_"


def shared_session_id(index: int) -> str:
    """Return session ``index`` of the shared-check run."""
    return f"{SHARED_SESSION_PREFIX}{index:02d}"


def shared_conn_id(index: int) -> str:
    """Return the connection id of session ``index`` of the shared-check run."""
    return f"{SHARED_CONN_PREFIX}{index:02d}"


def _emulator_check_times(url: str) -> tuple[dict[str, list[float]], int]:
    """From a thread: when (Unix time) the emulator saw each session's check-session requests."""
    from datetime import datetime

    from airflow_provider_whatsinfinity.emulator.control import EmulatorControl

    with EmulatorControl(url) as emulator:
        seen = emulator.requests()
    times: dict[str, list[float]] = {}
    for request in seen:
        if request["path"].startswith("/check-session/"):
            session = request["path"].rsplit("/", 1)[1]
            times.setdefault(session, []).append(datetime.fromisoformat(request["at"]).timestamp())
    return times, len(seen)


def _aligned_count(times: list[float], start: float, length: float) -> int:
    """
    Return a session's requests in ``length`` seconds from its first request at or after ``start``.

    Aligned on the session's own requests, a window of k poke intervals holds exactly k requests of
    each trigger polling every interval, wherever the window starts: a window aligned on the clock
    catches one request more or less of every trigger in step whose poll falls on its edges.
    """
    later = [at for at in times if at >= start]
    if not later:
        return 0
    return sum(1 for at in later if at < later[0] + length)


async def _shared_triggers(config: dict[str, Any]) -> dict[str, Any]:
    """
    The shared-check worker's event loop: ``sessions`` x ``per_session`` triggers, sharing on or off.

    Counts check-session requests twice: the provider's client calls (as in benchmark 4), and the
    emulator's request log over the same wall-clock window.
    """
    from airflow_provider_whatsinfinity.triggers import shared_check
    from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionReadyTrigger

    shared_check.enabled = config["shared"]
    sessions: int = config["sessions"]
    count = sessions * config["per_session"]
    poke: float = config["poke_interval"]
    emulator_pid: int = config["emulator_pid"]
    polls = _Polls(sessions)  # "all first": every session answered once
    polls.install()
    monitor = _LagMonitor()
    hard_deadline = time.monotonic() + config["max_seconds"]
    figures: dict[str, Any] = {"triggers": count, "sessions": sessions, "shared": config["shared"]}

    gc.collect()
    rss_before = process_rss_bytes()
    sockets_before = open_sockets()
    started = time.monotonic()
    monitor_task = asyncio.create_task(monitor.run(hard_deadline))
    events: dict[int, tuple[float, dict[str, Any]]] = {}
    # Trigger i waits on session i % sessions: the sessions' triggers start interleaved.
    triggers = [
        WhatsInfinitySessionReadyTrigger(
            whatsinfinity_conn_id=shared_conn_id(index % sessions),
            poke_interval=poke,
            timeout_at=time.time() + 600,
        )
        for index in range(count)
    ]
    tasks = [asyncio.create_task(_wait_one(trigger, index, events)) for index, trigger in enumerate(triggers)]
    try:
        while polls.all_first_at is None and time.monotonic() < hard_deadline:
            await asyncio.sleep(0.05)
        if polls.all_first_at is None:
            raise RuntimeError(f"only {len(polls.sessions)} of {sessions} sessions were checked in time")
        figures["startup_s"] = polls.all_first_at - started
        monitor.phase = polls.phase = "settle"
        await asyncio.sleep(2 * poke)  # every trigger past its first check, and in step
        gc.collect()
        figures["rss_delta_bytes"] = process_rss_bytes() - rss_before
        figures["sockets_open"] = open_sockets() - sockets_before

        monitor.phase = polls.phase = "steady"
        wall_a, cpu_a, polls_a, emulator_a, at_a = (
            time.time(),
            own_cpu_seconds(),
            polls.count,
            process_cpu_seconds(emulator_pid),
            time.monotonic(),
        )
        intervals = max(1, round(config["steady_seconds"] / poke))
        figures["steady_intervals"] = intervals
        await asyncio.sleep(intervals * poke)
        wall_b, cpu_b, polls_b, emulator_b, at_b = (
            time.time(),
            own_cpu_seconds(),
            polls.count,
            process_cpu_seconds(emulator_pid),
            time.monotonic(),
        )
        monitor.phase = polls.phase = "count"
        figures["steady_s"] = at_b - at_a
        figures["steady_cpu_s"] = cpu_b - cpu_a
        figures["steady_polls"] = polls_b - polls_a
        figures["steady_emulator_cpu_s"] = emulator_b - emulator_a
        steady_lags = monitor.lags.get("steady", [0.0])
        figures["steady_lag_p99_s"] = percentile(steady_lags, 0.99)
        figures["steady_lag_max_s"] = max(steady_lags)
        await asyncio.sleep(poke)  # each session's own window ends within one interval more
        times, logged = await asyncio.to_thread(_emulator_check_times, config["url"])
        figures["emulator_steady_checks"] = sum(
            _aligned_count(seen, wall_a, intervals * poke) for seen in times.values()
        )
        # The log keeps the last 10,000 requests: the window must be inside it to count.
        oldest = min((seen[0] for seen in times.values() if seen), default=wall_b)
        figures["emulator_log_complete"] = logged < 10_000 or oldest <= wall_a
        # Serving the log kept the emulator busy for a moment: let every trigger catch up first.
        await asyncio.sleep(2 * poke)

        monitor.phase = polls.phase = "link"
        records = await asyncio.to_thread(
            _link_sessions, config["url"], [shared_session_id(i) for i in range(sessions)], config["link_gap"]
        )
        linked_at = {record["session"]: record["sent"] for record in records}
        deadline = min(time.monotonic() + 2 * poke + 5, hard_deadline)
        while len(events) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        delays, outcomes = [], []
        for index, (when, payload) in events.items():
            delays.append(when - linked_at[shared_session_id(index % sessions)])
            outcomes.append(payload.get("outcome"))
        figures["events"] = len(events)
        figures["ready_events"] = outcomes.count("ready")
        figures["delays_s"] = delays
    finally:
        monitor.stopped = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, monitor_task, return_exceptions=True)
    return figures


def run_shared(
    *,
    sessions: int = 10,
    per_session: int = 100,
    poke_interval: float = 2.0,
    steady_seconds: float = 10.0,
) -> Outcome:
    """
    Run the shared-check benchmark: the same triggers without the shared check, then with it.

    :param sessions: Sessions waited on.
    :param per_session: Triggers waiting on each session (on one connection per session).
    :param poke_interval: Their ``poke_interval`` in seconds.
    :param steady_seconds: Length of the window in which requests and CPU are counted.
    """
    count = sessions * per_session
    outcome = Outcome(
        SHARED_NAME,
        f"{count} deferred session-ready triggers on {sessions} sessions, shared check off and on",
    )
    link_gap = 0.1
    outcome.settings = {
        "triggers": count,
        "sessions": sessions,
        "triggers_per_session": per_session,
        "poke_interval_s": poke_interval,
        "steady_window_s": steady_seconds,
        "link_gap_s": link_gap,
        "event_loop": "asyncio (default policy), one worker process pinned to its own CPU",
        "emulator": "separate process, pinned to the other CPU; sessions in status qr until linked",
        "connections": f"{sessions} AIRFLOW_CONN_WI_SHARED_NN environment variables, one per session",
        "off_switch": "airflow_provider_whatsinfinity.triggers.shared_check.enabled = False in the worker",
        "request_counting": "AsyncWhatsInfinityClient.check_session wrapped with a counter in the worker, "
        "and the emulator's request log over the same window",
    }
    config = {
        "mode": "shared",
        "sessions": sessions,
        "per_session": per_session,
        "poke_interval": poke_interval,
        "steady_seconds": steady_seconds,
        "link_gap": link_gap,
        "max_seconds": 120,
    }
    runs: dict[bool, dict[str, Any]] = {}
    with timed(outcome), BenchEmulator(name=f"{SHARED_NAME}.emulator") as emulator:
        env = {
            f"AIRFLOW_CONN_{shared_conn_id(i).upper()}": whatsinfinity_conn(
                emulator.url, shared_session_id(i)
            )
            for i in range(sessions)
        }
        config |= {"url": emulator.url, "emulator_pid": emulator.pid}
        for shared in (False, True):
            emulator.reset()
            for index in range(sessions):
                emulator.create_session(shared_session_id(index))
            runs[shared] = run_worker(
                "bench.deferred_sensors",
                config | {"shared": shared},
                name=f"{SHARED_NAME}.{'shared' if shared else 'alone'}",
                env=env,
                cpu=worker_cpu(),
                timeout=180,
            )
    return _report_shared(outcome, runs[False], runs[True])


def _report_shared(outcome: Outcome, alone: dict[str, Any], shared: dict[str, Any]) -> Outcome:
    """Fill in the side-by-side table, targets and figures of the shared-check benchmark."""
    count, sessions = shared["triggers"], shared["sessions"]
    poke: float = outcome.settings["poke_interval_s"]

    def per_interval(run: dict[str, Any], key: str) -> float:
        return float(run[key]) / (float(run["steady_s"]) / poke)

    def both(describe: Callable[[dict[str, Any]], str]) -> tuple[str, str]:
        return describe(alone), describe(shared)

    def delays(run: dict[str, Any]) -> str:
        values = run["delays_s"]
        if not values:
            return "n/a"
        return f"{median(values):.2f} / {percentile(values, 0.95):.2f} / {max(values):.2f} s"

    def lag(run: dict[str, Any]) -> str:
        return f"{ms(run['steady_lag_p99_s'], 1)} / {ms(run['steady_lag_max_s'], 1)} ms"

    def server_side(run: dict[str, Any]) -> float:
        if not run["emulator_log_complete"]:
            return math.nan
        return float(run["emulator_steady_checks"]) / float(run["steady_intervals"])

    def client_count(run: dict[str, Any]) -> str:
        return f"{run['steady_polls']} in {run['steady_s']:.1f} s: {per_interval(run, 'steady_polls'):.1f}"

    table = Table(
        f"4c. Shared check: {count} WhatsInfinitySessionReadyTrigger on {sessions} sessions "
        f"({count // sessions} each) in one event loop, poke_interval {poke:g} s",
        ["measure", "without sharing", "with sharing", "expected / note"],
    )
    rows: list[tuple[object, ...]] = [
        (
            "check-session requests per poll interval",
            *both(lambda run: f"{server_side(run):.1f}"),
            f"{count} / {sessions}",
        ),
        (
            "  per session per interval",
            *both(lambda run: f"{server_side(run) / sessions:.2f}"),
            f"{count // sessions} / 1",
        ),
        (
            "  client calls counted in the window",
            *both(client_count),
            "a count: +-1 per session at the edges",
        ),
        (
            "worker CPU (steady)",
            *both(lambda run: f"{run['steady_cpu_s'] / run['steady_s'] * 100:.1f}% of a core"),
            "",
        ),
        (
            "emulator CPU (steady)",
            *both(lambda run: f"{run['steady_emulator_cpu_s'] / run['steady_s'] * 100:.1f}% of a core"),
            "the service's side",
        ),
        ("event loop lag p99 / max (steady)", *both(lag), "50 ms ticker"),
        (
            "memory: RSS delta, all waiting",
            *both(lambda run: f"{run['rss_delta_bytes'] / 2**20:.1f} MiB"),
            "one connection pool per session when shared",
        ),
        ("sockets open while waiting", *both(lambda run: str(run["sockets_open"])), ""),
        (
            "startup: every session checked once",
            *both(lambda run: f"{run['startup_s']:.2f} s"),
            "all triggers started at once",
        ),
        (
            f"link -> event delay median / p95 / max ({count} events)",
            *both(delays),
            f"uniform 0..{poke:g} s (+ one request)",
        ),
        (
            "events: ready / all",
            *both(lambda run: f"{run['ready_events']} / {run['events']}"),
            f"{count} / {count}",
        ),
    ]
    for row in rows:
        table.add(*row)
    table.notes.append(
        "Requests per interval: from the emulator's request log, each session's requests in a window "
        "of whole intervals that starts at its first request in the steady phase."
    )
    table.notes.append(
        "Shared: one request per session whenever the last answer turns poke_interval old; every trigger "
        "on the session awaits or reuses it (see airflow_provider_whatsinfinity/triggers/shared_check.py)."
    )
    outcome.tables.append(table)

    per_session = server_side(shared) / sessions
    worst_delay = max(shared["delays_s"], default=float("inf"))
    outcome.targets += [
        Target(
            "shared check: requests per session per poll interval",
            "<= 1.1",
            f"{per_session:.2f}",
            per_session <= 1.1,
        ),
        Target(
            "shared check: link -> event delay, max",
            f"<= {poke + 1:g} s",
            f"{worst_delay:.2f} s",
            worst_delay <= poke + 1,
        ),
        Target(
            "shared check: ready events",
            str(count),
            str(shared["ready_events"]),
            shared["ready_events"] == count,
        ),
    ]

    def figures_of(run: dict[str, Any]) -> dict[str, Any]:
        values = run["delays_s"] or [float("nan")]
        return {
            "requests_per_interval": rounded(server_side(run), 2),
            "requests_per_session_per_interval": rounded(server_side(run) / sessions, 3),
            "emulator_requests_in_window": run["emulator_steady_checks"],
            "client_calls_in_window": run["steady_polls"],
            "steady_s": rounded(run["steady_s"], 3),
            "steady_cpu_share_of_core": rounded(run["steady_cpu_s"] / run["steady_s"], 4),
            "steady_emulator_cpu_share_of_core": rounded(run["steady_emulator_cpu_s"] / run["steady_s"], 4),
            "steady_lag_p99_ms": rounded(run["steady_lag_p99_s"] * 1000, 2),
            "steady_lag_max_ms": rounded(run["steady_lag_max_s"] * 1000, 2),
            "rss_delta_mib": rounded(run["rss_delta_bytes"] / 2**20, 2),
            "sockets_open": run["sockets_open"],
            "startup_s": rounded(run["startup_s"], 3),
            "link_to_event_s": {
                "median": rounded(median(values), 3),
                "p95": rounded(percentile(values, 0.95), 3),
                "max": rounded(max(values), 3),
            },
            "events": run["events"],
            "ready_events": run["ready_events"],
        }

    outcome.figures = {"without_sharing": figures_of(alone), "with_sharing": figures_of(shared)}
    return outcome


if __name__ == "__main__":
    worker_main(worker)
