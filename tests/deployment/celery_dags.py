"""
DAGs of the CeleryExecutor suite (test_celery_executor.py), deployed as they are to its dags folder.

Each sends through sessions of its own, so that one test's rate windows never slow another's; the
recipients are fixed here, and the test reads them from this module.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_whatsinfinity.operators.send import WhatsInfinitySendTextOperator

#: The deferrable list: 60 recipients through three sessions, and apart through one session.
LIST_RECIPIENTS = [f"4477009{n:05d}" for n in range(60)]
LIST_SESSIONS = ["wi_a", "wi_b", "wi_c"]
LIST_ONE_SESSION = "wi_s"
#: The mapped send: each session's own recipients, one mapped task instance per session.
MAPPED_RECIPIENTS = {
    session: [f"3361{index}{n:06d}" for n in range(6)]
    for index, session in enumerate(["wi_1", "wi_2", "wi_3", "wi_4"], start=1)
}
#: The list whose first try's worker is killed: its retry must finish it on the other worker.
RETRY_RECIPIENTS = [f"4915{n:08d}" for n in range(12)]
RETRY_SESSION = "wi_r"

COMMON: dict[str, Any] = {
    "schedule": None,
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 4,
}

with DAG(dag_id="wi_celery_list_three_sessions", **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to=LIST_RECIPIENTS,
        message="Celery hello {{ run_id }}",
        # A list of sessions: the list is shared among them (issue 12).
        whatsinfinity_conn_id=LIST_SESSIONS,
        deferrable=True,
        defer_threshold=1,
    )

with DAG(dag_id="wi_celery_list_one_session", **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to=LIST_RECIPIENTS,
        message="Celery hello {{ run_id }}",
        whatsinfinity_conn_id=LIST_ONE_SESSION,
        deferrable=True,
        defer_threshold=1,
    )

with DAG(dag_id="wi_celery_mapped", **COMMON):
    WhatsInfinitySendTextOperator.partial(task_id="send", message="Mapped hello {{ run_id }}").expand_kwargs(
        [{"to": to, "whatsinfinity_conn_id": session} for session, to in MAPPED_RECIPIENTS.items()]
    )

with DAG(dag_id="wi_celery_retry_list", **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to=RETRY_RECIPIENTS,
        message="Retried hello {{ run_id }}",
        whatsinfinity_conn_id=RETRY_SESSION,
        # Rate-limit waits are slept in the worker: the test kills it during one.
        deferrable=False,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
