"""Deferrable list sends in real DAG runs (dag.test(), which runs the deferral's trigger) on the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_whatsinfinity.operators.send import MAX_DEFERRALS_WITHOUT_PROGRESS
from tests.common import captured_logs, connection_json
from tests.dags.conftest import load_test_dag, task_states

#: Two messages per 2-second window: five recipients need three windows, so at least two deferrals.
RATE_LIMIT, RATE_WINDOW = 2, 2.0
RECIPIENTS = ["919999999999", "447700900123", "15550109999", "4915112345678", "33612345678"]

pytestmark = pytest.mark.whatsinfinity_emulator(
    rate_limit=RATE_LIMIT, rate_window=RATE_WINDOW, typing_delay=0.0
)


def _send_ti(run):
    [ti] = [t for t in run.get_task_instances() if t.task_id == "send"]
    return ti


def test_a_list_beyond_the_rate_window_defers_and_resumes_sending_each_once(airflow_env):
    with captured_logs() as logs:
        run = load_test_dag("wi_test_deferrable_list").test(run_conf={"to": RECIPIENTS})
    assert str(run.state) == "success", task_states(run)
    outbox = airflow_env.outbox()
    assert [m["to"] for m in outbox] == RECIPIENTS  # each exactly once, in order
    deferrals = [line for line in logs if "deferring" in line["event"] and "rate window" in line["event"]]
    assert len(deferrals) >= 2, [line["event"] for line in logs]
    ti = _send_ti(run)
    assert int(ti.try_number) == 1  # deferrals, not retries
    results = ti.xcom_pull(task_ids="send")
    assert [r["message_id"] for r in results] == [m["messageId"] for m in outbox]
    # Every refused send was a 429 (certainly not sent); every accepted one is in the outbox once.
    accepted = [r for r in airflow_env.requests("/send") if r["status"] == 200]
    assert len(accepted) == len(RECIPIENTS)


def test_a_short_wait_is_slept_in_the_worker_not_deferred(airflow_env):
    # Two recipients in a window of two: nothing to wait for, nothing deferred.
    with captured_logs() as logs:
        run = load_test_dag("wi_test_deferrable_list").test(run_conf={"to": RECIPIENTS[:2]})
    assert str(run.state) == "success", task_states(run)
    assert [m["to"] for m in airflow_env.outbox()] == RECIPIENTS[:2]
    assert not [line for line in logs if "deferring" in line["event"]]


def test_an_unknown_outcome_before_the_window_is_never_resent_after_the_deferral(airflow_env):
    # The second send's answer is lost (it went out): the list stops there, as without deferral, and
    # nobody after it is attempted; a retry (retries=1) sends to those, never to the second again.
    airflow_env.add_fault("/send", "after", then="drop", times=1, bodyContains=RECIPIENTS[1])
    run = load_test_dag("wi_test_deferrable_list").test(run_conf={"to": RECIPIENTS})
    assert str(run.state) == "failed", task_states(run)
    sent = [m["to"] for m in airflow_env.outbox()]
    assert sorted(sent) == sorted(RECIPIENTS)  # the lost answer's message did go out
    assert len(sent) == len(set(sent))  # and nobody got two


def test_the_connection_extra_makes_sends_deferrable(airflow_env, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(airflow_env.url, deferrable=True)
    )
    dag = load_test_dag("wi_test_deferrable_list")
    dag.get_task("send").deferrable = None  # as if not given: the connection decides
    with captured_logs() as logs:
        run = dag.test(run_conf={"to": RECIPIENTS[:3]})
    assert str(run.state) == "success", task_states(run)
    assert [m["to"] for m in airflow_env.outbox()] == RECIPIENTS[:3]
    assert [line for line in logs if "deferring" in line["event"]]


def test_a_session_that_stays_rate_limited_fails_the_task_instead_of_deferring_for_ever(airflow_env):
    # Every send to the third recipient is refused (429, retryAfter 1 s): after a few deferrals that
    # send nobody the try fails (transient), its retry does the same, and the task fails; the two
    # before it went out once, and nobody after it was attempted (the error names where it stopped).
    airflow_env.add_fault("/send", "status", status=429, times=1000, bodyContains=RECIPIENTS[2], retryAfter=1)
    with captured_logs() as logs:
        run = load_test_dag("wi_test_deferrable_list").test(run_conf={"to": RECIPIENTS})
    assert str(run.state) == "failed", task_states(run)
    assert [m["to"] for m in airflow_env.outbox()] == RECIPIENTS[:2]
    assert int(_send_ti(run).try_number) == 2  # the retry ran, and stopped the same way
    stopped = [line for line in logs if "deferrals that sent nobody" in line["event"]]
    assert len(stopped) == 2, [line["event"] for line in logs if line["log_level"] == "error"]
    deferrals = [line for line in logs if "deferring" in line["event"]]
    # Per try: MAX idle deferrals after the first (which followed sends); then the stop.
    assert len(deferrals) <= 2 * (MAX_DEFERRALS_WITHOUT_PROGRESS + 1)


def test_a_wait_longer_than_the_longest_deferral_fails_the_task(airflow_env):
    airflow_env.add_fault(
        "/send", "status", status=429, times=1000, bodyContains=RECIPIENTS[1], retryAfter=86400
    )
    with captured_logs() as logs:
        run = load_test_dag("wi_test_deferrable_list").test(run_conf={"to": RECIPIENTS[:3]})
    assert str(run.state) == "failed", task_states(run)
    assert [m["to"] for m in airflow_env.outbox()] == RECIPIENTS[:1]
    assert not [line for line in logs if "deferring" in line["event"]]


def test_a_dry_run_never_defers(airflow_env):
    # A dry run keeps no record: resumed after a deferral it would validate the whole list again.
    with captured_logs() as logs:
        run = load_test_dag("wi_test_deferrable_list").test(run_conf={"to": RECIPIENTS[:3], "dry_run": True})
    assert str(run.state) == "success", task_states(run)
    assert airflow_env.outbox() == []
    assert not [line for line in logs if "deferring" in line["event"]]
