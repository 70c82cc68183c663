"""
Session onboarding: create the session, then link it and say hello.

Shows the QR code (or asks for a pairing code), waits until the phone has linked the session, and
sends a welcome message. A session that is already linked goes straight to the welcome.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_whatsinfinity.operators.whatsinfinity import (
    WhatsInfinityCreateSessionOperator,
    WhatsInfinityPairingCodeOperator,
    WhatsInfinityQrCodeOperator,
    WhatsInfinitySendTextOperator,
)
from airflow_provider_whatsinfinity.sensors.whatsinfinity import WhatsInfinitySessionReadySensor

with DAG(
    dag_id="example_whatsinfinity_onboarding",
    description="Create and link a WhatsApp session, then say hello",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "link_with": Param(
            "pairing_code",
            enum=["pairing_code", "qr"],
            description="How the phone links the session (a QR expires after 60 s)",
        ),
        "phone_number": Param(
            "919999999999", type="string", description="The linking phone, for a pairing code"
        ),
        "qr_path": Param(
            "/tmp/whatsinfinity-qr.png", type="string", description="Where the QR PNG is written"
        ),
        "welcome_to": Param("919999999999", type="string", description="Who gets the welcome message"),
        "whatsinfinity_conn_id": Param("whatsinfinity_default", type="string"),
    },
    tags=["example", "whatsinfinity"],
) as dag:
    conn_id = "{{ params.whatsinfinity_conn_id }}"
    create = WhatsInfinityCreateSessionOperator(
        task_id="create_session", whatsinfinity_conn_id=conn_id, ignore_existing=True
    )

    @task.branch
    def how_to_link() -> str:
        """Skip linking when the session is already ready; else show a QR or a pairing code."""
        context = get_current_context()
        if context["ti"].xcom_pull(task_ids="create_session")["is_ready"]:
            return "wait_until_linked"
        return "write_qr" if context["params"]["link_with"] == "qr" else "request_pairing_code"

    qr = WhatsInfinityQrCodeOperator(
        task_id="write_qr", whatsinfinity_conn_id=conn_id, output_path="{{ params.qr_path }}"
    )
    pairing = WhatsInfinityPairingCodeOperator(
        task_id="request_pairing_code",
        whatsinfinity_conn_id=conn_id,
        phone_number="{{ params.phone_number }}",
    )
    wait = WhatsInfinitySessionReadySensor(
        task_id="wait_until_linked",
        whatsinfinity_conn_id=conn_id,
        deferrable=True,
        poke_interval=1,
        timeout=600,
        trigger_rule="none_failed",
    )
    welcome = WhatsInfinitySendTextOperator(
        task_id="send_welcome",
        whatsinfinity_conn_id=conn_id,
        to="{{ params.welcome_to }}",
        message="Hello from Airflow: this WhatsApp session is linked and ready.",
    )

    branch = how_to_link()
    create >> branch >> [qr, pairing] >> wait >> welcome
    branch >> wait
