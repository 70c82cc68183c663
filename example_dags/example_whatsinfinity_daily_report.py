"""
Daily report: build a PDF, make it reachable by URL, and send it as a document to a list of people.

The PDF is written to ``report_dir``, which a web server publishes at ``report_base_url`` (``make
demo`` starts one). In production, write it to object storage instead and pass the
``ObjectStoragePath`` as ``url``: the operator sends a time-limited signed URL.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendMediaOperator

if TYPE_CHECKING:
    from collections.abc import Sequence


def _pdf_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def build_pdf(title: str, lines: Sequence[str]) -> bytes:
    """
    Return a one-page PDF (A4, Helvetica) with a title and lines of text.

    :param title: The heading.
    :param lines: The body, one line each; characters outside Latin-1 are replaced.
    """
    body = ["BT", "/F1 18 Tf", "56 780 Td", f"({_pdf_text(title)}) Tj", "/F1 11 Tf", "0 -28 Td"]
    for line in lines:
        body += [f"({_pdf_text(line)}) Tj", "0 -16 Td"]
    body.append("ET")
    stream = "\n".join(body).encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


with DAG(
    dag_id="example_whatsinfinity_daily_report",
    description="Build the daily PDF report and send it on WhatsApp",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2},
    params={
        "recipients": Param(
            ["919999999999", "447700900123"],
            type="array",
            description="Who gets the report, with country codes",
        ),
        "report_dir": Param(
            "/tmp/whatsinfinity-reports", type="string", description="Where the PDF is written"
        ),
        "report_base_url": Param(
            "http://127.0.0.1:8766", type="string", description="URL at which report_dir is published"
        ),
        "whatsinfinity_conn_id": Param("whatsinfinity_default", type="string"),
    },
    tags=["example", "whatsinfinity"],
) as dag:

    @task
    def build_report() -> dict[str, Any]:
        """Write today's PDF report and return where it can be fetched."""
        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        # The day of the report: a run triggered without a logical date (the UI's default) has no ds,
        # only the time it was due to run.
        day = dag_run.logical_date or dag_run.run_after
        ds = day.strftime("%Y-%m-%d")
        seed = int(day.strftime("%j"))
        rows = [
            ("orders", 1200 + seed * 7 % 300),
            ("refunds", 14 + seed % 9),
            ("new customers", 80 + seed % 40),
        ]
        lines = [f"{name:<16}{value:>8}" for name, value in rows] + ["", f"Generated for {ds}"]
        pdf = build_pdf(f"Daily report {ds}", lines)
        file_name = f"daily-report-{ds}.pdf"
        folder = Path(params["report_dir"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_bytes(pdf)
        return {
            "url": f"{params['report_base_url'].rstrip('/')}/{file_name}",
            "file_name": file_name,
            "size": len(pdf),
            "sha256": hashlib.sha256(pdf).hexdigest(),
        }

    send = WhatsInfinitySendMediaOperator(
        task_id="send_report",
        whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}",
        to="{{ params.recipients }}",
        url="{{ ti.xcom_pull(task_ids='build_report')['url'] }}",
        media_type="document",
        file_name="{{ ti.xcom_pull(task_ids='build_report')['file_name'] }}",
        caption="Daily report for {{ ds }}",
    )

    build_report() >> send
