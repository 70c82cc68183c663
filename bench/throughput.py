"""
Benchmark A, throughput over sessions: 400 recipients through 1, 2, 4 and 8 sessions at the rate limit.

``WhatsInfinitySendTextOperator(task_id=..., to=[400 numbers], message=...,
whatsinfinity_conn_id=[s connections]).execute({})`` in a worker process, pinned to its own CPU,
against the emulator at ``--rate-limit 10 --rate-window 2 --typing-delay 0`` in another. Each row
starts from a reset emulator with ``s`` sessions created and linked through the control API, one
``AIRFLOW_CONN_BENCH_TP_<i>`` connection each. The operator spreads the list over the sessions
(least loaded first, in list order: ``ceil(n/s)`` for the busiest) and drives them concurrently in
one event loop; the client waits out each 429 for its ``retryAfter`` (plus jitter).

``execute({})`` is called directly, not through ``dag.test()``: what is measured is the send engine
against the rate windows, and ``dag.test()`` would add parsing, a metadata database and the task's
scheduling to the wall time. With an empty context the delivery record lives in memory (no
``task_state_store``), as in :mod:`bench.bulk_send`.

The bound: the first send opens a session's first window, and window ``k`` cannot open before
``(k - 1) * window`` seconds later, so the busiest session's last window opens at the earliest
``(windows - 1) * window`` seconds after the first send, with ``windows = ceil(ceil(n/s) / limit)``.
Its sends are counted as taking no time: the bound is a floor that no client can beat, and the
target (at most 1.10x) is the room left for the requests themselves and the client's pauses.

From the emulator's outbox: messages lost (recipients missing) and sent twice (more than once), and,
per session, when each window opened and how long its ten sends took; from the client's log lines,
the ``retryAfter`` of each 429 and the pause slept for it. They say where the time over the bound goes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import time
from collections import Counter
from typing import Any

from bench.common import (
    BenchEmulator,
    Outcome,
    Table,
    Target,
    median,
    ms,
    rounded,
    run_worker,
    timed,
    whatsinfinity_conn,
    worker_cpu,
    worker_main,
)

NAME = "throughput"
RECIPIENTS = 400
SESSIONS = (1, 2, 4, 8)
RATE_LIMIT = 10
RATE_WINDOW = 2.0
TARGET_FACTOR = 1.10


def numbers(count: int) -> list[str]:
    """Return ``count`` distinct phone numbers."""
    return [f"4477018{index:05d}" for index in range(count)]


def conn_id(index: int) -> str:
    """Return the connection ID of session ``index``."""
    return f"bench_tp_{index}"


def session_id(index: int) -> str:
    """Return the emulator's session ID of session ``index``."""
    return f"bench-tp-{index}"


def windows_needed(recipients: int, sessions: int, limit: int = RATE_LIMIT) -> int:
    """Return the rate windows the busiest session needs: ``ceil(ceil(n/s) / limit)``."""
    return math.ceil(math.ceil(recipients / sessions) / limit)


def bound_seconds(recipients: int, sessions: int, window: float, limit: int = RATE_LIMIT) -> float:
    """Return the least time the windows allow: ``(windows - 1) * window``, the last window only opened."""
    return (windows_needed(recipients, sessions, limit) - 1) * window


class _Pauses(logging.Handler):
    """Collects the client's 429 pauses from its log lines: the ``retryAfter`` asked and the pause slept."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.pauses: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # "WhatsInfinity %s; waiting %.1f s as the server asked" with (RateLimitedError, pause).
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and "as the server asked" in str(record.msg):
            error, pause = args
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None and isinstance(pause, float):
                self.pauses.append((float(retry_after), pause))


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In the worker process: build the operator over the connections and time its ``execute({})``.

    :param config: ``to`` (the recipients), ``conn_ids`` and ``message``.
    """
    from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator

    pauses = _Pauses()
    logging.getLogger("airflow_provider_whatsinfinity.client").addHandler(pauses)
    operator = WhatsInfinitySendTextOperator(
        task_id="throughput",
        to=config["to"],
        message=config["message"],
        whatsinfinity_conn_id=config["conn_ids"],
    )
    started_at = time.time()
    started = time.perf_counter()
    results = operator.execute({})
    wall = time.perf_counter() - started
    assert isinstance(results, list)
    return {
        "wall_s": wall,
        "started_at": started_at,
        "ended_at": started_at + wall,
        "results": len(results),
        "pauses": pauses.pauses,
    }


def _timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _windows_of(delivered: list[float]) -> list[list[float]]:
    """Split one session's delivery times into its rate windows (``RATE_LIMIT`` sends each)."""
    return [delivered[i : i + RATE_LIMIT] for i in range(0, len(delivered), RATE_LIMIT)]


def _row(
    emulator: BenchEmulator, sessions: int, recipients: int, window: float, index: int
) -> dict[str, Any]:
    """Send the list through ``sessions`` sessions from a reset emulator; return the row's figures."""
    emulator.reset()
    env: dict[str, str] = {}
    for number in range(sessions):
        emulator.create_session(session_id(number), link=True)
        env[f"AIRFLOW_CONN_{conn_id(number).upper()}"] = whatsinfinity_conn(emulator.url, session_id(number))
    expected = numbers(recipients)
    bound = bound_seconds(recipients, sessions, window)
    config = {
        "to": expected,
        "conn_ids": [conn_id(number) for number in range(sessions)],
        "message": f"Throughput benchmark, {sessions} sessions (row {index})",
    }
    result = run_worker(
        f"bench.{NAME}", config, name=f"{NAME}.worker", env=env, cpu=worker_cpu(), timeout=bound * 2 + 90
    )
    outbox = emulator.outbox()
    counts = Counter(message["to"] for message in outbox)
    sends = emulator.requests("/send")

    # Per session: when each window opened (its first delivery), how long its sends took, and how far
    # the next window opened past the end of this one (the time lost per window).
    overshoots: list[float] = []
    bursts: list[float] = []
    firsts: list[float] = []
    lasts: list[float] = []
    last_windows: list[tuple[float, float]] = []  # (last delivery, that window's length), per session
    per_session: dict[str, int] = {}
    for number in range(sessions):
        delivered = [_timestamp(m["deliveredAt"]) for m in outbox if m["sessionId"] == session_id(number)]
        per_session[session_id(number)] = len(delivered)
        if not delivered:
            continue
        firsts.append(delivered[0])
        lasts.append(delivered[-1])
        windows = _windows_of(delivered)
        bursts += [chunk[-1] - chunk[0] for chunk in windows[:-1]]
        last_windows.append((windows[-1][-1], windows[-1][-1] - windows[-1][0]))
        overshoots += [later[0] - earlier[0] - window for earlier, later in itertools.pairwise(windows)]
    jitters = [pause - retry_after for retry_after, pause in result["pauses"]]
    retry_afters = Counter(int(retry_after) for retry_after, _ in result["pauses"])
    wall = result["wall_s"]
    mean_overshoot = sum(overshoots) / len(overshoots) if overshoots else math.nan
    mean_burst = sum(bursts) / len(bursts) if bursts else math.nan
    mean_jitter = sum(jitters) / len(jitters) if jitters else math.nan
    return {
        "sessions": sessions,
        "recipients": recipients,
        "busiest_session_sends": math.ceil(recipients / sessions),
        "windows": windows_needed(recipients, sessions),
        "bound_s": bound,
        "wall_s": round(wall, 3),
        "factor_of_bound": round(wall / bound, 3) if bound else None,
        "lost": sum(1 for number in expected if counts[number] == 0),
        "twice": sum(1 for number in expected if counts[number] > 1),
        "unexpected": sum(1 for number in counts if number not in set(expected)),
        "delivered": len(outbox),
        "delivered_per_session": per_session,
        "results_returned": result["results"],
        "send_requests": len(sends),
        "answered_429": sum(1 for r in sends if r["status"] == 429),
        "answered_other": sum(1 for r in sends if r["status"] not in (200, 429)),
        # Where the time over the bound goes.
        "startup_s": rounded(min(firsts) - result["started_at"]) if firsts else None,
        "tail_s": rounded(result["ended_at"] - max(lasts)) if lasts else None,
        "last_window_s": rounded(max(last_windows)[1]) if last_windows else None,
        "overshoot_per_window_s": rounded(mean_overshoot, 4),
        "overshoot_per_window_max_s": rounded(max(overshoots), 4) if overshoots else None,
        "burst_per_window_s": rounded(mean_burst, 4),
        "client_jitter_mean_s": rounded(mean_jitter, 4),
        "client_pauses": len(jitters),
        "retry_after_seconds": {str(key): value for key, value in sorted(retry_afters.items())},
    }


def run(
    *,
    recipients: int = RECIPIENTS,
    sessions: tuple[int, ...] = SESSIONS,
    rate_window: float = RATE_WINDOW,
) -> Outcome:
    """
    Run the benchmark: one row per number of sessions, side by side in one run.

    :param recipients: The list's length.
    :param sessions: The numbers of sessions (connections) to send through, one row each.
    :param rate_window: ``--rate-window`` in seconds (``--rate-limit`` is always 10).
    """
    outcome = Outcome(
        NAME, f"Throughput: {recipients} recipients over {', '.join(map(str, sessions))} sessions"
    )
    outcome.settings = {
        "recipients": recipients,
        "sessions": list(sessions),
        "rate_limit": RATE_LIMIT,
        "rate_window_s": rate_window,
        "emulator": f"--rate-limit {RATE_LIMIT} --rate-window {rate_window:g} --typing-delay 0, own process",
        "operator": "WhatsInfinitySendTextOperator(task_id=..., to=[numbers], message=..., "
        "whatsinfinity_conn_id=[one connection per session]).execute({}) in a worker process; default "
        "connection settings (max_rate_limit_wait 120 s); a list even for one session",
        "bound": "(ceil(ceil(n/s)/limit) - 1) * window: the busiest session's last window only opened",
    }
    rows: list[dict[str, Any]] = []
    with (
        timed(outcome),
        BenchEmulator(rate_limit=RATE_LIMIT, rate_window=rate_window, name=f"{NAME}.emulator") as emulator,
    ):
        for index, count in enumerate(sessions, start=1):
            rows.append(_row(emulator, count, recipients, rate_window, index))

    table = Table(
        f"A. Throughput: {recipients} recipients, --rate-limit {RATE_LIMIT} --rate-window {rate_window:g}, "
        "one event loop over s sessions",
        [
            "sessions",
            "per session",
            "windows",
            "bound s",
            "wall s",
            "x bound",
            "lost",
            "twice",
            "429s",
            "target",
        ],
    )
    for row in rows:
        factor = row["factor_of_bound"]
        table.add(
            row["sessions"],
            row["busiest_session_sends"],
            row["windows"],
            f"{row['bound_s']:g}",
            f"{row['wall_s']:.2f}",
            "n/a" if factor is None else f"{factor:.3f}x",
            row["lost"] + row["unexpected"],
            row["twice"],
            row["answered_429"],
            "<= 1.10x, 0 lost, 0 twice",
        )
    table.notes.append(
        "bound = (ceil(ceil(n/s)/10) - 1) * window: the busiest session's last window only opened, sends "
        "taking no time; lost = recipients missing from the emulator's outbox, twice = in it more than once"
    )
    where = Table(
        "A. Where the time over the bound goes (means over every session's windows)",
        [
            "sessions",
            "over bound s",
            "start -> 1st delivery ms",
            "window opened late ms",
            "of which 10 sends ms",
            "client jitter ms",
            "rest ms",
            "last window + return ms",
            "retryAfter asked",
        ],
    )
    for row in rows:
        overshoot, burst, jitter = (
            row["overshoot_per_window_s"],
            row["burst_per_window_s"],
            row["client_jitter_mean_s"],
        )
        rest = overshoot - burst - jitter if None not in (overshoot, burst, jitter) else math.nan
        last = (row["last_window_s"] or 0.0) + (row["tail_s"] or 0.0)
        where.add(
            row["sessions"],
            f"{row['wall_s'] - row['bound_s']:.2f}",
            ms(row["startup_s"] if row["startup_s"] is not None else math.nan, 0),
            ms(overshoot if overshoot is not None else math.nan, 0),
            ms(burst if burst is not None else math.nan, 0),
            ms(jitter if jitter is not None else math.nan, 0),
            ms(rest, 0),
            ms(last, 0),
            " ".join(f"{seconds} s x{count}" for seconds, count in row["retry_after_seconds"].items()) or "-",
        )
    where.notes += [
        "window opened late = next window's first delivery - this window's first - window, per session and "
        "window; 10 sends = first to last delivery in a window; client jitter = pause slept - retryAfter "
        "(retries.py: uniform(0, min(0.25, 0.02 * retryAfter + 0.02))); rest = late - sends - jitter: the "
        "refused 11th request, the wake-up and the next request's trip",
        "retryAfter is whole seconds until the window ends, counted from the refused send: waiting it from "
        "there lands past the window's end by the time the window's sends took (it rounds up)",
    ]
    outcome.tables += [table, where]
    measured = [row for row in rows if row["factor_of_bound"] is not None]
    worst = max((row["factor_of_bound"] for row in measured), default=math.nan)
    lost = max(row["lost"] + row["unexpected"] for row in rows)
    twice = max(row["twice"] for row in rows)
    outcome.targets += [
        Target(
            "throughput: wall time vs bound (worst row)",
            "<= 1.10x",
            f"{worst:.3f}x",
            bool(measured) and worst <= TARGET_FACTOR,
        ),
        Target("throughput: messages lost (worst row)", "0", str(lost), lost == 0),
        Target("throughput: messages sent twice (worst row)", "0", str(twice), twice == 0),
    ]
    outcome.figures = {
        "rows": rows,
        "worst_factor_of_bound": rounded(worst, 3),
        "median_wall_s": rounded(median([row["wall_s"] for row in rows]), 3),
    }
    return outcome


if __name__ == "__main__":
    worker_main(worker)
