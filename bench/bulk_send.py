"""
Benchmark 3, bulk send at the rate limit: one operator, 50 recipients, 10 messages per 2 s window.

``WhatsInfinitySendTextOperator(task_id=..., to=[50 numbers], message=...).execute({})`` in a worker
process, against the emulator at ``--rate-limit 10 --rate-window 2 --typing-delay 0``. The wall time
of ``execute`` is compared with the bound the windows allow, ``(ceil(50/10) - 1) * 2 = 8 s``; the
emulator's outbox (``GET /_emulator/outbox``) tells the messages lost and sent twice, and its request
log the 429s the client waited through. Each run starts from a reset emulator. Target: at most 1.10x
the bound, zero lost, zero twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
    rounded,
    run_worker,
    timed,
    whatsinfinity_conn,
    worker_cpu,
    worker_main,
)

NAME = "bulk_send"
SESSION = "bench-bulk"
RECIPIENTS = 50
RATE_LIMIT = 10
RATE_WINDOW = 2.0
TARGET_FACTOR = 1.10


def numbers(count: int = RECIPIENTS) -> list[str]:
    """Return ``count`` distinct phone numbers."""
    return [f"4477009{index:05d}" for index in range(count)]


def bound_seconds(count: int = RECIPIENTS) -> float:
    """Return the least time the rate windows allow for ``count`` messages: the windows after the first."""
    return (math.ceil(count / RATE_LIMIT) - 1) * RATE_WINDOW


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """
    In the worker process: build the operator and time its ``execute({})``.

    :param config: ``to`` (the recipients) and ``message``.
    """
    from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator

    operator = WhatsInfinitySendTextOperator(task_id="bulk_send", to=config["to"], message=config["message"])
    started = time.perf_counter()
    results = operator.execute({})
    wall = time.perf_counter() - started
    assert isinstance(results, list)
    return {"wall_s": wall, "results": len(results), "delivered": sum(not r["queued"] for r in results)}


def _timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run(*, runs: int = 2) -> Outcome:
    """
    Run the benchmark.

    :param runs: Bulk sends, each from a reset emulator; the table shows each and the worst counts.
    """
    outcome = Outcome(NAME, "Bulk send of 50 recipients at the rate limit")
    bound = bound_seconds()
    outcome.settings = {
        "recipients": RECIPIENTS,
        "rate_limit": RATE_LIMIT,
        "rate_window_s": RATE_WINDOW,
        "bound_s": bound,
        "runs": runs,
        "emulator": f"--rate-limit {RATE_LIMIT} --rate-window {RATE_WINDOW:g} --typing-delay 0, own process",
        "windows": "the window the emulator starts when the session is linked has expired before the first "
        "send, so the first send starts the first window",
        "operator": "WhatsInfinitySendTextOperator(task_id=..., to=[50 numbers], message=...).execute({}), "
        "default connection settings (max_rate_limit_wait 120 s)",
    }
    expected = numbers()
    runs_figures: list[dict[str, Any]] = []
    with (
        timed(outcome),
        BenchEmulator(rate_limit=RATE_LIMIT, rate_window=RATE_WINDOW, name=f"{NAME}.emulator") as emulator,
    ):
        env = {"AIRFLOW_CONN_WHATSINFINITY_DEFAULT": whatsinfinity_conn(emulator.url, SESSION)}
        for index in range(runs):
            emulator.reset()
            emulator.create_session(SESSION, link=True)
            # Linking answers with the session's status, and reading the rate limit starts a window in
            # the emulator: let that window run out, so that the first send starts the first window.
            time.sleep(RATE_WINDOW + 0.1)
            config = {"to": expected, "message": f"Bulk benchmark run {index + 1}"}
            result = run_worker(
                "bench.bulk_send", config, name=f"{NAME}.worker", env=env, cpu=worker_cpu(), timeout=180
            )
            outbox = emulator.outbox(SESSION)
            counts = Counter(message["to"] for message in outbox)
            sends = [r for r in emulator.requests() if r["path"] == "/send"]
            delivered_at = [_timestamp(message["deliveredAt"]) for message in outbox]
            windows = [delivered_at[i : i + RATE_LIMIT] for i in range(0, len(delivered_at), RATE_LIMIT)]
            gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(windows)]
            runs_figures.append(
                {
                    "wall_s": round(result["wall_s"], 3),
                    "factor_of_bound": round(result["wall_s"] / bound, 3),
                    "first_to_last_delivery_s": round(delivered_at[-1] - delivered_at[0], 3)
                    if delivered_at
                    else None,
                    "window_starts_apart_s": [round(gap, 3) for gap in gaps],
                    "results_returned": result["results"],
                    "delivered": len(outbox),
                    "lost": sum(1 for number in expected if counts[number] == 0),
                    "twice": sum(1 for number in expected if counts[number] > 1),
                    "unexpected": sum(1 for number in counts if number not in set(expected)),
                    "send_requests": len(sends),
                    "answered_429": sum(1 for r in sends if r["status"] == 429),
                }
            )

    table = Table(
        f"3. Bulk send: {RECIPIENTS} recipients, --rate-limit {RATE_LIMIT} --rate-window {RATE_WINDOW:g} "
        f"(bound (ceil({RECIPIENTS}/{RATE_LIMIT})-1)*{RATE_WINDOW:g} = {bound:g} s)",
        [
            "run",
            "wall s",
            "x bound",
            "1st->last delivery s",
            "window starts apart s",
            "delivered",
            "lost",
            "twice",
            "429s waited",
            "target",
        ],
    )
    for index, figures in enumerate(runs_figures, start=1):
        table.add(
            index,
            f"{figures['wall_s']:.2f}",
            f"{figures['factor_of_bound']:.3f}x",
            f"{figures['first_to_last_delivery_s']:.2f}",
            " ".join(f"{gap:.2f}" for gap in figures["window_starts_apart_s"]),
            figures["delivered"],
            figures["lost"],
            figures["twice"],
            figures["answered_429"],
            "<= 1.10x, 0 lost, 0 twice",
        )
    worst = max(figures["factor_of_bound"] for figures in runs_figures)
    lost = max(figures["lost"] + figures["unexpected"] for figures in runs_figures)
    twice = max(figures["twice"] for figures in runs_figures)
    table.notes.append(
        f"median wall {median([f['wall_s'] for f in runs_figures]):.2f} s; a window is {RATE_WINDOW:g} s, "
        "so window starts further apart than that are time the client waited past the reset"
    )
    outcome.tables.append(table)
    outcome.targets += [
        Target("bulk: wall time vs bound (worst run)", "<= 1.10x", f"{worst:.3f}x", worst <= TARGET_FACTOR),
        Target("bulk: messages lost (worst run)", "0", str(lost), lost == 0),
        Target("bulk: messages sent twice (worst run)", "0", str(twice), twice == 0),
    ]
    outcome.figures = {
        "bound_s": bound,
        "runs": runs_figures,
        "worst_factor_of_bound": rounded(worst, 3),
    }
    return outcome


if __name__ == "__main__":
    worker_main(worker)
