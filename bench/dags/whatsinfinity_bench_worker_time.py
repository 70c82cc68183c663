"""
The DAGs of the ``worker_time`` benchmark (bench/worker_time.py): one list send, sleeping or deferring.

Deployed alone (copied to a throw-away DAGs folder) to a real Airflow; the benchmark triggers each
through the REST API with ``{"to": [...]}`` as the run's conf, and watches which process holds a
worker slot meanwhile. Not an example for users: see example_dags/ for those.

- ``whatsinfinity_bench_worker_time_sleep``: ``deferrable=False``; every rate-limit wait is slept in
  the worker (``max_rate_limit_wait`` 600 s, above any one window's wait).
- ``whatsinfinity_bench_worker_time_defer``: ``deferrable=True``, ``defer_threshold=5``; a wait longer
  than 5 s defers the task to the triggerer until the session's rate window resets.
- ``whatsinfinity_bench_worker_time_warmup``: a dry run, run once in each deployment before the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator

COMMON: dict[str, Any] = {
    "schedule": None,
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "render_template_as_native_obj": True,
    "params": {"to": Param(["919999999999"], type="array")},
}

with DAG(dag_id="whatsinfinity_bench_worker_time_sleep", **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        whatsinfinity_conn_id="wi_bench_sleep",
        to="{{ params.to }}",
        message="Worker-time benchmark, sleeping ({{ run_id }})",
        deferrable=False,
        hook_params={"max_rate_limit_wait": 600},
    )

with DAG(dag_id="whatsinfinity_bench_worker_time_defer", **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        whatsinfinity_conn_id="wi_bench_defer",
        to="{{ params.to }}",
        message="Worker-time benchmark, deferring ({{ run_id }})",
        deferrable=True,
        defer_threshold=5,
    )

with DAG(dag_id="whatsinfinity_bench_worker_time_warmup", **COMMON):
    # Run once before the measured sends: the first task of a new deployment waits seconds for its
    # start (see bench/README.md), which is not what is measured.
    WhatsInfinitySendTextOperator(
        task_id="send",
        whatsinfinity_conn_id="wi_bench_warmup",
        to="{{ params.to }}",
        message="Worker-time benchmark, warm-up ({{ run_id }})",
        dry_run=True,
    )
