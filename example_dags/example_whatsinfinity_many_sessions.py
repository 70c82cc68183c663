"""
Many sessions: one report to a list of people through several WhatsApp sessions, in the two ways.

Each session has its own connection (its login the session ID, its secret the session's API key), named
``whatsinfinity_a``, ``whatsinfinity_b`` and ``whatsinfinity_c`` here; the ``whatsinfinity_conn_id``
param lists them. The same list of recipients gets the report twice, once each way, one way after the
other (they share the sessions, and one session is one rate limit):

1. ``send_over_sessions``: one task, ``whatsinfinity_conn_id`` a list. The recipients are spread
   over the sessions, which send concurrently in the task, each paced by its own rate limit. The
   task's delivery record keeps which session each recipient was given, so a retry sends nobody twice
   and nobody through another session. A session that fails for good (a wrong key, an unknown or
   disabled session) hands its recipients to the others: the results name each send's
   ``whatsinfinity_conn_id`` (and ``reassigned_from``), and the XCom ``failed_sessions`` says why.
   With ``deferrable=True`` a long rate-limit wait frees the worker until the window resets.
2. ``send_per_session``: one mapped task instance per session (dynamic task mapping over the chunks
   ``split_per_session`` returns). Each session is its own task instance, seen, logged and retried on
   its own, but a session that fails leaves its chunk unsent: nothing hands it over.

Pick one task when the list must get out even if a session drops, and one record and one list of
results for the whole send suit you. Pick the mapped task when each session should be seen on its
own (its state, log and duration in the UI) and retried alone, and a session's failure may leave its
chunk for a person to look at.

One session is one rate limit, however many tasks send through it. Tasks of several DAGs (or of
several runs) sending through the same sessions should take turns through a pool rather than wait on
each other's refusals; map indices that share a session (more chunks than sessions) are bounded with
``max_active_tis_per_dagrun``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator

#: The report both ways send, each with a line saying which way sent it.
REPORT = "Stock report for {{ dag_run.run_after.strftime('%Y-%m-%d') }}: 14 stores reconciled."

with DAG(
    dag_id="example_whatsinfinity_many_sessions",
    description="Send one report over several WhatsApp sessions: one task, or one mapped task per session",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2},
    params={
        "recipients": Param(
            [
                "919999999999",
                "447700900123",
                "15550109999",
                "919876543210",
                "447700900456",
                "15550104444",
            ],
            type="array",
            description="Who gets the report, with country codes",
        ),
        "whatsinfinity_conn_id": Param(
            ["whatsinfinity_a", "whatsinfinity_b", "whatsinfinity_c"],
            type="array",
            description="The sessions' connections, one per session",
        ),
    },
    tags=["example", "whatsinfinity"],
) as dag:

    @task
    def recipients() -> list[str]:
        """Return who gets the report: the ``recipients`` param here, a query in production."""
        return list(get_current_context()["params"]["recipients"])

    to = recipients()

    send_over_sessions = WhatsInfinitySendTextOperator(
        task_id="send_over_sessions",
        to=to,
        message=REPORT + "\n(One task over every session.)",
        whatsinfinity_conn_id="{{ params.whatsinfinity_conn_id }}",
        deferrable=True,
    )

    @task
    def split_per_session(numbers: list[str]) -> list[dict[str, Any]]:
        """
        Deal the recipients out to the sessions, one chunk each, as the one-task way spreads them.

        A session left without recipients (fewer recipients than sessions) gets no task instance: a
        send to nobody fails.

        :param numbers: Who gets the report.
        :return: One ``{"whatsinfinity_conn_id": ..., "to": [...]}`` per session, for ``expand_kwargs``.
        """
        conn_ids = get_current_context()["params"]["whatsinfinity_conn_id"]
        chunks = [
            {"whatsinfinity_conn_id": conn_id, "to": numbers[n :: len(conn_ids)]}
            for n, conn_id in enumerate(conn_ids)
        ]
        return [chunk for chunk in chunks if chunk["to"]]

    # At run time the task gets the list that ``to`` stands for; mypy sees only the XComArg.
    chunks = split_per_session(to)  # type: ignore[arg-type]

    send_per_session = WhatsInfinitySendTextOperator.partial(
        task_id="send_per_session",
        message=REPORT + "\n(This session's own mapped task.)",
        deferrable=True,
        # The UI names each map index by its session instead of 0, 1, 2.
        map_index_template="{{ task.whatsinfinity_conn_id }}",
    ).expand_kwargs(chunks)

    # One way after the other: both send through the same sessions, so within the same rate limits.
    send_over_sessions >> send_per_session
