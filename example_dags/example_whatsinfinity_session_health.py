"""
Session health: a DAG that runs when the WhatsApp session changes, alerts, and restarts it if needed.

The DAG is scheduled on an ``Asset`` watched by a ``WhatsInfinitySessionEventTrigger`` (event-driven
scheduling, Airflow 3.0+): the triggerer checks the session every minute and the DAG runs once per
change (the session leaving or returning to ready, a new warning, the queue reaching 50 messages),
never again while a state holds. The trigger's first check after the triggerer starts it is a
baseline, not a change.

The trigger runs in the triggerer, outside any run, so its connection is named directly rather than
through the ``whatsinfinity_conn_id`` param, which the restart uses. An alert sent through the very
session that dropped waits in its queue until the session is back: ``alert_conn_id`` names a
connection to another session, so that the alert arrives while the outage lasts.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Param, get_current_context, task

from airflow_provider_whatsinfinity._compat import AirflowSkipException
from airflow_provider_whatsinfinity.notifications.whatsinfinity import WhatsInfinityNotifier
from airflow_provider_whatsinfinity.operators.session import WhatsInfinityRestartSessionOperator
from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionEventTrigger

log = logging.getLogger(__name__)

session_health = Asset(
    "whatsinfinity://whatsinfinity_default/session-health",
    watchers=[
        AssetWatcher(
            name="whatsinfinity_session_health",
            trigger=WhatsInfinitySessionEventTrigger(
                whatsinfinity_conn_id="whatsinfinity_default", poll_interval=60, queue_size_threshold=50
            ),
        )
    ],
)

alert = WhatsInfinityNotifier(
    whatsinfinity_conn_id="{{ params.alert_conn_id }}",
    to="{{ params.oncall }}",
    message="{{ ti.xcom_pull(task_ids='describe_change') }}",
)


def session_changes() -> list[dict[str, Any]]:
    """Return the payloads of the trigger events that started this run, oldest first."""
    context = get_current_context()
    changes = []
    for events in context["triggering_asset_events"].values():
        for event in events:
            payload = (event.extra or {}).get("payload")
            if isinstance(payload, dict) and "new" in payload:
                changes.append(payload)
    return changes


with DAG(
    dag_id="example_whatsinfinity_session_health",
    description="Alert and restart when the WhatsApp session's health changes",
    schedule=[session_health],
    catchup=False,
    params={
        "oncall": Param(
            "447700900123", type="string", description="Who is alerted (not the session's number)"
        ),
        "whatsinfinity_conn_id": Param("whatsinfinity_default", type="string"),
        "alert_conn_id": Param(
            "whatsinfinity_default", type="string", description="Another session's connection, for alerts"
        ),
    },
    tags=["example", "whatsinfinity"],
) as dag:

    @task(on_success_callback=alert)
    def describe_change() -> str:
        """Log each change and return the alert's text."""
        lines = []
        for change in session_changes():
            old, new = change["old"], change["new"]
            line = f"{old['status']} -> {new['status']} ({', '.join(change['reasons'])})"
            if new.get("warning"):
                line += f", warning: {new['warning']}"
            if new.get("queue_size") is not None:
                line += f", queueSize {new['queue_size']}"
            log.info("WhatsInfinity session changed: %s", line)
            lines.append(line)
        return "WhatsApp session health changed: " + ("; ".join(lines) or "no details in the event")

    @task
    def became_disconnected() -> None:
        """Go on to the restart only when the latest change left the session disconnected."""
        changes = session_changes()
        if not changes or changes[-1]["new"]["status"] != "disconnected":
            raise AirflowSkipException("The session is not disconnected; nothing to restart")

    restart = WhatsInfinityRestartSessionOperator(
        task_id="restart_session", whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}"
    )

    describe_change() >> became_disconnected() >> restart
