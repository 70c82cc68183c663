"""Operators and sensor in real DAG runs (dag.test()) against the emulator."""

from __future__ import annotations

import json

import pytest

from airflow_provider_whatsinfinity._compat import HAS_RETRY_POLICY
from tests.common import KEY, PHONE, SESSION, connection_json, needs_airflow_feature
from tests.dags.conftest import load_test_dag, phone_links, task_states

OTHERS = ["447700900123", "15550109999"]


def tries_of(run, task_id: str = "send") -> int:
    [ti] = [t for t in run.get_task_instances() if t.task_id == task_id]
    return int(ti.try_number)


def xcom_of(run, task_id: str = "send"):
    [ti] = [t for t in run.get_task_instances() if t.task_id == task_id and t.map_index in (-1, 0)]
    return ti.xcom_pull(task_ids=task_id, map_indexes=ti.map_index)


def test_list_send_that_fails_halfway_is_retried_without_duplicates(airflow_env):
    recipients = [PHONE, *OTHERS]
    # Sends to the second recipient get 503 until the client's four attempts are spent: the first try
    # fails there with QueueFullError (transient), and Airflow's retry finishes the list.
    airflow_env.add_fault("/send", "status", status=503, times=4, bodyContains=OTHERS[0])
    run = load_test_dag("wi_test_list_send").test(run_conf={"to": recipients})
    assert str(run.state) == "success", task_states(run)
    assert tries_of(run) == 2
    outbox = airflow_env.outbox()
    assert [m["to"] for m in outbox] == recipients  # each exactly once, in order
    sends_to_first = [r for r in airflow_env.requests("/send") if r["status"] == 200]
    assert len(sends_to_first) == 3
    results = xcom_of(run)
    assert [r["message_id"] for r in results] == [m["messageId"] for m in outbox]
    assert all(m["message"].startswith("Hello wi_test_list_send on ") for m in outbox)


def test_permanent_error_fails_at_once_without_retries(airflow_env):
    airflow_env.mark_unregistered("15550001111")
    run = load_test_dag("wi_test_permanent").test(run_conf={"to": "15550001111"})
    assert task_states(run) == {"send": "failed"}
    assert tries_of(run) == 1  # retries=3, none used
    assert len(airflow_env.requests("/send")) == 1
    assert airflow_env.outbox() == []


def test_invalid_recipient_fails_at_once_without_a_request(airflow_env):
    run = load_test_dag("wi_test_permanent").test(run_conf={"to": "not a number"})
    assert task_states(run) == {"send": "failed"}
    assert tries_of(run) == 1
    assert airflow_env.requests("/send") == []


def test_outcome_unknown_fails_at_once_and_is_not_sent_again(airflow_env):
    airflow_env.add_fault("/send", "after", then="drop", times=1)
    run = load_test_dag("wi_test_permanent").test(run_conf={"to": PHONE})
    assert task_states(run) == {"send": "failed"}
    assert tries_of(run) == 1
    assert [m["to"] for m in airflow_env.outbox()] == [PHONE]  # it did go out, exactly once


def test_transient_error_uses_airflows_retries(airflow_env):
    airflow_env.add_fault("/send", "status", status=503, times=100)
    run = load_test_dag("wi_test_list_send").test(run_conf={"to": [PHONE]})
    assert task_states(run) == {"send": "failed"}
    assert tries_of(run) == 2
    assert len(airflow_env.requests("/send")) == 8  # two tries of four attempts each
    assert airflow_env.outbox() == []


def test_mapped_send_expands_over_recipients(airflow_env):
    run = load_test_dag("wi_test_mapped").test()
    assert str(run.state) == "success", task_states(run)
    assert sorted(m["to"] for m in airflow_env.outbox()) == sorted([PHONE, *OTHERS])
    mapped = [t for t in run.get_task_instances() if t.task_id == "send"]
    assert sorted(t.map_index for t in mapped) == [0, 1, 2]
    for ti in mapped:
        result = ti.xcom_pull(task_ids="send", map_indexes=ti.map_index)
        assert result["to"] == [PHONE, *OTHERS][ti.map_index]


def test_templating_of_every_field(airflow_env):
    run = load_test_dag("wi_test_templating").test(run_conf={"who": "ops"})
    assert str(run.state) == "success", task_states(run)
    [sent] = airflow_env.outbox()
    assert sent["to"] == PHONE
    assert sent["message"].startswith("ops: wi_test_templating/send for 20")
    result = xcom_of(run)
    assert (result["dry_run"], result["to"]) == (False, PHONE)
    assert KEY not in json.dumps(result)


def test_templated_dry_run_sends_nothing(airflow_env):
    run = load_test_dag("wi_test_templating").test(run_conf={"who": "nobody"})
    assert str(run.state) == "success", task_states(run)
    assert airflow_env.outbox() == []
    assert xcom_of(run)["payload"] == {
        "text": f"nobody: wi_test_templating/send for {run.logical_date:%Y-%m-%d}"
    }


@needs_airflow_feature(HAS_RETRY_POLICY, "retry policies", "3.3")
@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=2, typing_delay=0.0)
def test_retry_policy_retries_a_rate_limited_list_after_retry_after(
    airflow_db, whatsinfinity_emulator, monkeypatch
):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    impatient = connection_json(whatsinfinity_emulator.url, max_rate_limit_wait=0)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_IMPATIENT", impatient)
    run = load_test_dag("wi_test_rate_limited").test()
    assert str(run.state) == "success", task_states(run)
    assert tries_of(run) == 2  # retry_delay is 10 minutes; the policy waited retryAfter instead
    assert [m["to"] for m in whatsinfinity_emulator.outbox()] == [PHONE, OTHERS[0]]


def test_sensor_succeeds_with_the_session_status(airflow_env):
    run = load_test_dag("wi_test_sensor").test()
    assert task_states(run) == {"wait": "success"}
    status = xcom_of(run, "wait")
    assert (status["session_id"], status["status"], status["is_ready"]) == (SESSION, "active", True)


def test_sensor_fails_at_once_on_a_disabled_session(airflow_env):
    airflow_env.disable(SESSION)
    run = load_test_dag("wi_test_sensor").test()
    assert task_states(run) == {"wait": "failed"}
    assert len(airflow_env.requests(f"/check-session/{SESSION}")) == 1


def test_sensor_fails_at_once_on_a_wrong_key(airflow_db, whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSINFINITY_DEFAULT",
        connection_json(whatsinfinity_emulator.url, password="wrong-key-0123456789"),
    )
    run = load_test_dag("wi_test_sensor").test()
    assert task_states(run) == {"wait": "failed"}
    assert len(whatsinfinity_emulator.requests(f"/check-session/{SESSION}")) == 1


def test_sensor_in_reschedule_mode(airflow_db, whatsinfinity_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY)
    # The phone links once the first poke has seen the session unlinked: the sensor must reschedule.
    with phone_links(whatsinfinity_emulator, f"/check-session/{SESSION}") as linked:
        run = load_test_dag("wi_test_sensor_reschedule").test()
    assert linked.is_set()
    assert task_states(run) == {"wait": "success"}
    assert len(whatsinfinity_emulator.requests(f"/check-session/{SESSION}")) >= 2


def test_deferrable_sensor_times_out_when_the_session_never_links(
    airflow_db, whatsinfinity_emulator, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY)
    run = load_test_dag("wi_test_sensor_deferrable_timeout").test()
    assert task_states(run) == {"wait": "failed"}
    assert len(whatsinfinity_emulator.requests(f"/check-session/{SESSION}")) >= 3


def test_a_recipient_whose_send_was_in_flight_when_the_try_died_is_never_sent_again(airflow_env):
    # The try times out (execution_timeout 2 s) while the server is still handling the second send.
    airflow_env.add_fault("/send", "delay", seconds=3, times=1, bodyContains=OTHERS[0])
    run = load_test_dag("wi_test_inflight").test()
    assert task_states(run) == {"send": "failed"}
    assert tries_of(run) == 2
    import time

    time.sleep(1.5)  # let the delayed request finish in the emulator
    outbox = [m["to"] for m in airflow_env.outbox()]
    assert sorted(outbox) == sorted([PHONE, *OTHERS])  # each once: the retry skipped the one in flight
    assert len(outbox) == 3


def test_one_refused_recipient_does_not_stop_the_others(airflow_env):
    airflow_env.mark_unregistered(OTHERS[0])
    run = load_test_dag("wi_test_list_send").test(run_conf={"to": [PHONE, *OTHERS]})
    assert task_states(run) == {"send": "failed"}
    assert tries_of(run) == 1  # a number not on WhatsApp will not be on it on a retry either
    assert [m["to"] for m in airflow_env.outbox()] == [PHONE, OTHERS[1]]


def test_a_list_rendered_to_text_is_read_back(airflow_env):
    run = load_test_dag("wi_test_rendered_list").test(run_conf={"to": [PHONE, OTHERS[0]]})
    assert str(run.state) == "success", task_states(run)
    assert [m["to"] for m in airflow_env.outbox()] == [PHONE, OTHERS[0]]
