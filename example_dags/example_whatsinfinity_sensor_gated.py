"""Sensor-gated sends: wait in the triggerer until the session is ready, then send a text and a chart."""

from __future__ import annotations

import struct
import zlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_whatsinfinity.operators.whatsinfinity import (
    WhatsInfinitySendMediaOperator,
    WhatsInfinitySendTextOperator,
)
from airflow_provider_whatsinfinity.sensors.whatsinfinity import WhatsInfinitySessionReadySensor

if TYPE_CHECKING:
    from collections.abc import Sequence


def draw_bar_chart(values: Sequence[float], width: int = 320, height: int = 200) -> bytes:
    """
    Return a PNG bar chart of the values, green bars on white.

    :param values: The bars' heights, in any unit; the tallest fills the chart.
    :param width: Image width in pixels.
    :param height: Image height in pixels.
    """
    top = max(max(values, default=0), 1e-9)
    slot = width // max(len(values), 1)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter: none
        for x in range(width):
            index, offset = divmod(x, slot)
            inside = index < len(values) and slot // 6 <= offset < slot - slot // 6
            filled = inside and height - y <= values[index] / top * (height - 10)
            row += b"\x25\xd3\x66" if filled else b"\xff\xff\xff"
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


with DAG(
    dag_id="example_whatsinfinity_sensor_gated",
    description="Wait for the WhatsApp session, then send a text and a chart",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "recipient": Param("919999999999", type="string", description="Who gets the messages"),
        "report_dir": Param("/tmp/whatsinfinity-reports", type="string"),
        "report_base_url": Param("http://127.0.0.1:8766", type="string"),
        "whatsinfinity_conn_id": Param("whatsinfinity_default", type="string"),
    },
    tags=["example", "whatsinfinity"],
) as dag:
    wait = WhatsInfinitySessionReadySensor(
        task_id="wait_for_session",
        whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}",
        deferrable=True,
        poke_interval=1,
        timeout=300,
    )

    @task
    def draw_chart() -> str:
        """Draw this week's chart and return its URL."""
        context = get_current_context()
        params = context["params"]
        # Not ds: a run triggered without a logical date (the UI's default, and every run of this
        # unscheduled DAG) has none. Every run has the time it was due to run.
        day = context["dag_run"].run_after.strftime("%Y-%m-%d")
        folder = Path(params["report_dir"])
        folder.mkdir(parents=True, exist_ok=True)
        name = f"weekly-chart-{day}.png"
        (folder / name).write_bytes(draw_bar_chart([3, 5, 4, 8, 6, 9, 7]))
        return f"{params['report_base_url'].rstrip('/')}/{name}"

    chart_url = draw_chart()

    text = WhatsInfinitySendTextOperator(
        task_id="send_text",
        whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}",
        to="{{ params.recipient }}",
        message="Session {{ ti.xcom_pull(task_ids='wait_for_session')['session_id'] }} is ready. "
        "This week's chart follows.",
    )
    chart = WhatsInfinitySendMediaOperator(
        task_id="send_chart",
        whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}",
        to="{{ params.recipient }}",
        url=chart_url,
        caption="Orders this week",
    )

    wait >> text >> chart
