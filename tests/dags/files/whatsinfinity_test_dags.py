"""DAGs that the provider's tests run with dag.test(); not examples for users."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_whatsinfinity._compat import HAS_RETRY_POLICY
from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator
from airflow_provider_whatsinfinity.retry_policy import WhatsInfinityRetryPolicy
from airflow_provider_whatsinfinity.sensors.whatsinfinity import WhatsInfinitySessionReadySensor

START = datetime(2026, 1, 1)
COMMON: dict[str, Any] = {
    "schedule": None,
    "start_date": START,
    "catchup": False,
    "render_template_as_native_obj": True,
}

with DAG(
    dag_id="wi_test_list_send",
    params={"to": Param(["919999999999"], type="array"), "retries": Param(1, type="integer")},
    **COMMON,
):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to="{{ params.to }}",
        message="Hello {{ dag.dag_id }} on {{ ds }}",
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

with DAG(dag_id="wi_test_permanent", params={"to": Param("919999999999", type="string")}, **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send", to="{{ params.to }}", message="never", retries=3, retry_delay=timedelta(seconds=0)
    )

with DAG(dag_id="wi_test_mapped", **COMMON):
    WhatsInfinitySendTextOperator.partial(task_id="send", message="Mapped hello").expand(
        to=["919999999999", "447700900123", "15550109999"]
    )

with DAG(dag_id="wi_test_templating", params={"who": Param("ops", type="string")}, **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to="+91 99999 {{ '99999' }}",
        message="{{ params.who }}: {{ dag.dag_id }}/{{ task.task_id }} for {{ ds }}",
        typing="{{ params.who == 'ops' }}",
        dry_run="{{ params.who == 'nobody' }}",
        whatsinfinity_conn_id="{{ 'whatsinfinity_default' }}",
    )

if HAS_RETRY_POLICY:  # Airflow 3.3+
    with DAG(dag_id="wi_test_rate_limited", **COMMON):
        WhatsInfinitySendTextOperator(
            task_id="send",
            whatsinfinity_conn_id="whatsinfinity_impatient",
            to=["919999999999", "447700900123"],
            message="paced by the retry policy",
            retries=3,
            retry_delay=timedelta(minutes=10),
            retry_policy=WhatsInfinityRetryPolicy(min_delay=timedelta(seconds=0)),
        )

with DAG(dag_id="wi_test_sensor", params={"mode": Param("poke", type="string")}, **COMMON):
    WhatsInfinitySessionReadySensor(task_id="wait", mode="poke", poke_interval=0.2, timeout=10)

with DAG(dag_id="wi_test_sensor_reschedule", **COMMON):
    WhatsInfinitySessionReadySensor(task_id="wait", mode="reschedule", poke_interval=1, timeout=20)

with DAG(dag_id="wi_test_sensor_deferrable_timeout", **COMMON):
    WhatsInfinitySessionReadySensor(task_id="wait", deferrable=True, poke_interval=0.2, timeout=1)

with DAG(dag_id="wi_test_inflight", **COMMON):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to=["919999999999", "447700900123", "15550109999"],
        message="in flight",
        execution_timeout=timedelta(seconds=2),
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

with DAG(
    dag_id="wi_test_rendered_list",
    params={"to": Param(["919999999999"], type="array")},
    schedule=None,
    start_date=START,
    catchup=False,
):
    # Without render_template_as_native_obj the list renders to its text: the operator reads it back.
    WhatsInfinitySendTextOperator(task_id="send", to="{{ params.to }}", message="text-rendered list")


def _record_failure_context(context: Any) -> None:
    """Write down whether the failure callback's context holds the task's exception."""
    record = {"has_exception": "exception" in context, "exception": repr(context.get("exception"))}
    Path(context["params"]["record_to"]).write_text(json.dumps(record))


with DAG(dag_id="wi_test_failure_context", params={"record_to": Param("", type="string")}, **COMMON):
    # The feature probe of tests/dags/conftest.py: does dag.test() hand the callback the exception?

    @task(task_id="fail", retries=0, on_failure_callback=_record_failure_context)
    def fail() -> None:
        raise RuntimeError("probe: is the exception in the failure callback's context?")

    fail()

with DAG(
    dag_id="wi_test_deferrable_list",
    params={"to": Param(["919999999999"], type="array"), "dry_run": Param(False, type="boolean")},
    **COMMON,
):
    WhatsInfinitySendTextOperator(
        task_id="send",
        to="{{ params.to }}",
        message="Deferred hello {{ run_id }}",
        dry_run="{{ params.dry_run }}",
        deferrable=True,
        defer_threshold=0.5,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

with DAG(
    dag_id="wi_test_multi_session",
    params={
        "to": Param(["919999999999"], type="array"),
        "conns": Param(["wi_a", "wi_b", "wi_c"], type="array"),
        "deferrable": Param(False, type="boolean"),
        "reverse_on_retry": Param(False, type="boolean"),
    },
    **COMMON,
):
    WhatsInfinitySendTextOperator(
        task_id="send",
        # A retry may get the list in another order (a set read again, an upstream query without ORDER
        # BY): each recipient must still go through the session the first try gave it.
        to="{{ params.to[::-1] if params.reverse_on_retry and ti.try_number > 1 else params.to }}",
        message="Hello from {{ dag.dag_id }}",
        whatsinfinity_conn_id="{{ params.conns }}",
        deferrable="{{ params.deferrable }}",
        defer_threshold=0.5,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
