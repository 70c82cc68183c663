"""List sends over several sessions (``whatsinfinity_conn_id`` a list) in real DAG runs on the emulator."""

from __future__ import annotations

from collections import Counter

import pytest

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator
from tests.common import captured_logs, connection_json
from tests.dags.conftest import load_test_dag, task_states

#: Two messages per 2-second window and session.
RATE_LIMIT, RATE_WINDOW = 2, 2.0
RECIPIENTS = [f"9198765432{n:02d}" for n in range(12)]
#: Connection id -> (session id, API key). The session ids share no digits with a phone number, so
#: that a fault can pick one session's sends by its id in the request body.
SESSIONS = {
    "wi_a": ("alpha-session", "key-alpha-0123456789"),
    "wi_b": ("beta-session", "key-beta-0123456789"),
    "wi_c": ("gamma-session", "key-gamma-0123456789"),
}

pytestmark = pytest.mark.whatsinfinity_emulator(
    rate_limit=RATE_LIMIT, rate_window=RATE_WINDOW, typing_delay=0.0
)


@pytest.fixture
def sessions(airflow_env, whatsinfinity_emulator, monkeypatch):
    """Three linked sessions, each with its connection ``wi_a``, ``wi_b``, ``wi_c``."""
    for conn_id, (session_id, key) in SESSIONS.items():
        whatsinfinity_emulator.create_session(session_id, key, link=True)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(whatsinfinity_emulator.url, session_id, key)
        )
    return whatsinfinity_emulator


def _run(**conf):
    run = load_test_dag("wi_test_multi_session").test(run_conf=conf)
    [ti] = [t for t in run.get_task_instances() if t.task_id == "send"]
    return run, ti


def _sent_by_session(emulator) -> dict[str, list[str]]:
    return {
        conn_id: [m["to"] for m in emulator.outbox(session_id)]
        for conn_id, (session_id, _) in SESSIONS.items()
    }


def _assert_each_exactly_once(emulator, recipients=RECIPIENTS):
    sent = Counter(m["to"] for m in emulator.outbox())
    assert sent == Counter(recipients), sent


def test_a_list_is_spread_over_the_sessions_each_recipient_sent_once_through_one(sessions):
    run, ti = _run(to=RECIPIENTS)
    assert str(run.state) == "success", task_states(run)
    _assert_each_exactly_once(sessions)
    # Spread evenly, in list order: the n-th recipient through the (n mod 3)-th session.
    assert _sent_by_session(sessions) == {conn_id: RECIPIENTS[n::3] for n, conn_id in enumerate(SESSIONS)}
    results = ti.xcom_pull(task_ids="send")
    assert [r["to"] for r in results] == RECIPIENTS
    assert [r["whatsinfinity_conn_id"] for r in results] == [list(SESSIONS)[n % 3] for n in range(12)]
    assert not any("reassigned_from" in r for r in results)


def test_the_sessions_send_concurrently_each_paced_by_its_own_rate_window(sessions):
    # One session after another, the first would send its four (two windows) before the second
    # starts. Concurrently, each session's first window goes out before any session's second.
    run, _ = _run(to=RECIPIENTS)
    assert str(run.state) == "success", task_states(run)
    accepted = [r for r in sessions.requests("/send") if r["status"] == 200]
    assert len(accepted) == len(RECIPIENTS)
    first_window = [m["sessionId"] for m in sessions.outbox()][: RATE_LIMIT * len(SESSIONS)]
    assert Counter(first_window) == {session_id: RATE_LIMIT for session_id, _ in SESSIONS.values()}


def test_a_retry_sends_each_recipient_through_the_session_its_first_try_gave_it(sessions):
    # The first try: the beta session's first send is refused with a wait far beyond
    # max_rate_limit_wait, so that session stops and the task fails (transient: a retry). The retry
    # gets the list reversed; spreading it afresh would give most recipients another session.
    sessions.add_fault("/send", "status", status=429, retryAfter=3600, times=1, bodyContains="beta-session")
    run, ti = _run(to=RECIPIENTS, reverse_on_retry=True)
    assert str(run.state) == "success", task_states(run)
    assert int(ti.try_number) == 2
    _assert_each_exactly_once(sessions)
    by_session = {conn_id: sorted(sent) for conn_id, sent in _sent_by_session(sessions).items()}
    assert by_session == {conn_id: sorted(RECIPIENTS[n::3]) for n, conn_id in enumerate(SESSIONS)}


@pytest.mark.parametrize("failure", ["wrong key", "disabled"])
def test_a_session_that_fails_for_good_hands_its_recipients_to_the_others(sessions, monkeypatch, failure):
    if failure == "wrong key":
        monkeypatch.setenv(
            "AIRFLOW_CONN_WI_B", connection_json(sessions.url, "beta-session", "not-the-key-0123456789")
        )
    else:
        sessions.disable("beta-session")
    with captured_logs() as logs:
        run, ti = _run(to=RECIPIENTS)
    assert str(run.state) == "success", task_states(run)
    assert int(ti.try_number) == 1
    _assert_each_exactly_once(sessions)
    by_session = _sent_by_session(sessions)
    assert by_session["wi_b"] == []
    assert len(by_session["wi_a"]) + len(by_session["wi_c"]) == len(RECIPIENTS)
    results = ti.xcom_pull(task_ids="send")
    handed = [r for r in results if r.get("reassigned_from") == "wi_b"]
    assert sorted(r["to"] for r in handed) == sorted(RECIPIENTS[1::3])
    assert {r["whatsinfinity_conn_id"] for r in handed} <= {"wi_a", "wi_c"}
    failed = ti.xcom_pull(task_ids="send", key="failed_sessions")
    error = "AuthenticationError" if failure == "wrong key" else "ConflictError"
    assert list(failed) == ["wi_b"], failed
    assert failed["wi_b"].startswith(error), failed
    assert "not-the-key-0123456789" not in str(failed)
    assert not [line for line in logs if "key-" in line["event"]]  # no API key in any log line
    assert any("failed for good" in line["event"] for line in logs)


def test_when_every_session_fails_for_good_the_task_fails_without_retries(sessions, monkeypatch):
    for conn_id, (session_id, _) in SESSIONS.items():
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(sessions.url, session_id, "wrong")
        )
    run, ti = _run(to=RECIPIENTS)
    assert str(run.state) == "failed", task_states(run)
    assert int(ti.try_number) == 1  # permanent: no retry
    assert sessions.outbox() == []


def test_one_connection_that_cannot_work_stops_the_list_before_anyone_is_sent(sessions, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WI_C", connection_json(sessions.url, "gamma-session", ""))  # no key
    run, _ = _run(to=RECIPIENTS)
    assert str(run.state) == "failed", task_states(run)
    assert sessions.outbox() == []
    assert sessions.requests("/send") == []


@pytest.mark.parametrize(
    ("conns", "problem"),
    [
        ([], "empty list"),
        (["wi_a", "wi_b", "wi_a"], "'wi_a' more than once"),
        (["wi_a", ""], "no connection id"),
    ],
)
def test_a_bad_list_of_connections_is_refused_before_anything_is_sent(sessions, conns, problem):
    run, _ = _run(to=RECIPIENTS, conns=conns)
    assert str(run.state) == "failed", task_states(run)
    assert sessions.requests("/send") == []
    operator = WhatsInfinitySendTextOperator(
        task_id="t", to=RECIPIENTS, message="m", whatsinfinity_conn_id=conns
    )
    with pytest.raises(AirflowFailException, match=problem):
        operator.connection_ids()


def test_an_unknown_outcome_in_one_session_stops_them_all_and_is_never_sent_again(sessions):
    # The answer to one of alpha's sends is lost after it went out: every session stops before its
    # next send (answers are being lost), and the retry sends everyone else, never that one again.
    lost = RECIPIENTS[3]
    sessions.add_fault("/send", "after", then="drop", times=1, bodyContains=lost)
    run, ti = _run(to=RECIPIENTS)
    assert str(run.state) == "failed", task_states(run)  # the unknown outcome is reported
    assert int(ti.try_number) == 2
    _assert_each_exactly_once(sessions)  # the lost answer's message did go out, once


def test_a_deferrable_send_over_three_sessions_defers_and_resumes_each_once(sessions):
    with captured_logs() as logs:
        run, ti = _run(to=RECIPIENTS, deferrable=True)
    assert str(run.state) == "success", task_states(run)
    assert int(ti.try_number) == 1  # deferrals, not retries
    _assert_each_exactly_once(sessions)
    assert _sent_by_session(sessions) == {conn_id: RECIPIENTS[n::3] for n, conn_id in enumerate(SESSIONS)}
    deferrals = [line for line in logs if "deferring" in line["event"]]
    assert len(deferrals) >= 1
    # The triggerer logs every event: it carries counters, never a phone number.
    assert not [
        line for line in logs if any(number in str(line) for number in RECIPIENTS) and "Trigger" in str(line)
    ]
