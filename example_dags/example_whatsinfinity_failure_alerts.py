"""
Failure alerts: when a task fails, the on-call people get a WhatsApp message naming it.

``load_partner_feed`` fails on purpose; its ``on_failure_callback`` is a ``WhatsInfinityNotifier``.
``record_outcome`` runs whatever happened (``all_done``), so the run itself ends successfully once
the alert has gone out.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airflow_provider_whatsinfinity.notifications.whatsinfinity import WhatsInfinityNotifier

alert = WhatsInfinityNotifier(
    whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}",
    to="{{ params.oncall }}",
    message=(
        "Airflow: {{ ti.task_id }} failed in {{ dag.dag_id }} (run {{ run_id }}, try {{ ti.try_number }}).\n"
        # The exception is None when Airflow hands the callback none (dag.test() before Airflow 3.3).
        "{{ exception or 'See the task log for the error.' }}"
    ),
)

with DAG(
    dag_id="example_whatsinfinity_failure_alerts",
    description="Alert the on-call people on WhatsApp when a task fails",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "oncall": Param(["919999999999"], type="array", description="Who is alerted"),
        "whatsinfinity_conn_id": Param("whatsinfinity_default", type="string"),
    },
    tags=["example", "whatsinfinity"],
) as dag:

    @task(retries=0, on_failure_callback=alert)
    def load_partner_feed() -> None:
        """Fail the way a flaky upstream does."""
        raise RuntimeError("Partner feed answered HTTP 503 three times; giving up")

    @task(trigger_rule="all_done")
    def record_outcome() -> str:
        """Run whatever happened upstream."""
        return "recorded"

    load_partner_feed() >> record_outcome()
