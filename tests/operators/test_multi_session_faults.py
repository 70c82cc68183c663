"""
Sends over several sessions when things go wrong, one execution at a time (a hostile review's cases).

Each try is an ``execute`` with a stand-in ``task_state_store`` kept across tries; a deferral is
followed as a triggerer would: wait until its moment, then ``execute_complete`` with its event.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.exceptions import RateLimitedError
from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator
from tests.common import captured_logs, connection_json

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.0
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

RECIPIENTS = ["919876500001", "919876500002", "919876500003", "919876500004"]

pytestmark = pytest.mark.whatsinfinity_emulator(rate_limit=1000, rate_window=60.0, typing_delay=0.0)


class Store:
    """``task_state_store``: get, set, delete; values copied on write, as a real store serializes them."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = copy.deepcopy(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class TI:
    """What the operator reads of its task instance: max_tries, and xcom_push."""

    def __init__(self) -> None:
        self.max_tries = 3
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def sessions(emulator, monkeypatch, *names: str) -> list[str]:
    """Create and link a session per name, each with its connection ``wi_<name>``; return their ids."""
    for name in names:
        key = f"key-{name}-0123456789"
        emulator.create_session(f"{name}-session", key, link=True)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_WI_{name.upper()}", connection_json(emulator.url, f"{name}-session", key)
        )
    return [f"wi_{name}" for name in names]


def send(conn_ids: list[str], store: Store, ti: TI, to: list[str] = RECIPIENTS, **kwargs: Any) -> Any:
    operator = WhatsInfinitySendTextOperator(
        task_id="send", to=to, message="m", whatsinfinity_conn_id=conn_ids, **kwargs
    )
    return operator.execute({"task_state_store": store, "ti": ti})  # type: ignore[typeddict-item]


def sent(emulator) -> Counter[str]:
    return Counter(m["to"] for m in emulator.outbox())


def test_a_session_handed_recipients_after_it_finished_is_started_again(whatsinfinity_emulator, monkeypatch):
    # The disabled session's refusal and the other's last answer often come back together; the
    # receiver had finished, and was taken for running: the task succeeded with a recipient unsent.
    for trial in range(30):
        conn_ids = sessions(whatsinfinity_emulator, monkeypatch, f"t{trial}alpha", f"t{trial}beta")
        whatsinfinity_emulator.disable(f"t{trial}alpha-session")
        to = [f"91987{trial:03d}2000", f"91987{trial:03d}2001"]
        results = send(conn_ids, Store(), TI(), to=to)
        assert [sent(whatsinfinity_emulator)[number] for number in to] == [1, 1], f"trial {trial}"
        assert [r["whatsinfinity_conn_id"] for r in results] == [f"wi_t{trial}beta"] * 2


def test_a_transient_stop_keeps_the_retry_a_permanent_failure_elsewhere_would_deny(
    whatsinfinity_emulator, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WI_ALPHA",
        connection_json(whatsinfinity_emulator.url, "alpha-session", "stale-key-0123456789"),
    )
    # alpha's refusal comes last, when beta already stopped on a wait beyond max_rate_limit_wait.
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=0.5, times=1, bodyContains="alpha-session")
    whatsinfinity_emulator.add_fault(
        "/send", "status", status=429, retryAfter=3600, times=1, bodyContains="beta-session"
    )
    store = Store()
    with pytest.raises(RateLimitedError):  # transient: the task's retries apply
        send(conn_ids, store, TI())
    send(conn_ids, store, TI())  # the retry: every one of them certainly not sent, so sent now
    assert sent(whatsinfinity_emulator) == Counter(RECIPIENTS)


class OneFailedWrite(Store):
    """Fails the first write that hands sends over to another session, as an API server's 503 would."""

    failed = False

    def set(self, key: str, value: Any) -> None:
        before = (self.values.get(key) or {}).get("sessions", {})
        if not self.failed and before and value.get("sessions", {}) != before:
            self.failed = True
            raise RuntimeError("task_state_store: the API server answered 503")
        super().set(key, value)


def test_a_failed_record_write_lets_a_request_on_the_wire_finish_and_be_recorded(
    whatsinfinity_emulator, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.disable("alpha-session")  # its recipients go to beta: the write that fails
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=1.0, times=1, bodyContains="beta-session")
    store = OneFailedWrite()
    with pytest.raises(RuntimeError, match="503"):
        send(conn_ids, store, TI())
    # beta's request was on the wire: it finished, and is recorded sent, not "maybe sent".
    states = {key: entry["state"] for key, entry in store.values["whatsinfinity_delivery"]["sends"].items()}
    assert states == {RECIPIENTS[1]: "sent"}
    send(conn_ids, store, TI())  # the retry sends everyone else, and succeeds
    assert sent(whatsinfinity_emulator) == Counter(RECIPIENTS)


def test_a_retry_remembers_which_session_failed_and_whose_recipients_it_handed_over(
    whatsinfinity_emulator, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.disable("alpha-session")
    whatsinfinity_emulator.add_fault(
        "/send", "status", status=429, retryAfter=3600, times=1, bodyContains=RECIPIENTS[0]
    )
    store = Store()
    with pytest.raises(RateLimitedError):
        send(conn_ids, store, TI())
    retry = TI()  # a new try: its XComs start empty
    results = send(conn_ids, store, retry)
    assert {r["to"]: r.get("reassigned_from") for r in results} == {
        RECIPIENTS[0]: "wi_alpha",
        RECIPIENTS[1]: None,
        RECIPIENTS[2]: "wi_alpha",
        RECIPIENTS[3]: None,
    }
    assert list(retry.xcoms["failed_sessions"]) == ["wi_alpha"]
    assert retry.xcoms["failed_sessions"]["wi_alpha"].startswith("ConflictError, HTTP 409, requestId ")


def test_the_failed_sessions_xcom_names_no_key_a_gateway_quoted_and_no_number(
    whatsinfinity_emulator, proxy, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    key = "key-alpha-0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_WI_ALPHA", connection_json(proxy.url, "alpha-session", key))
    body = {"success": False, "error": "Unauthorized", "details": f"API key '{key}' is revoked"}
    proxy.answer("/send", 401, json.dumps(body).encode())
    ti = TI()
    with captured_logs() as logs:
        send(conn_ids, Store(), ti, to=RECIPIENTS[:2])
    assert list(ti.xcoms["failed_sessions"]) == ["wi_alpha"]
    assert "AuthenticationError, HTTP 401" in ti.xcoms["failed_sessions"]["wi_alpha"]
    assert key not in json.dumps(ti.xcoms)
    assert not [number for number in RECIPIENTS if number in json.dumps(ti.xcoms["failed_sessions"])]
    assert not [line for line in logs if key in line["event"]]  # nor in any log line: the error's text
    assert sent(whatsinfinity_emulator) == Counter(RECIPIENTS[:2])  # both through beta


def run_with_deferrals(conn_ids: list[str], store: Store, ti: TI, limit: int = 30, **kwargs: Any) -> Any:
    """Execute, and after each deferral wait for its moment and resume, as the triggerer would."""
    event = None
    for _ in range(limit):
        operator = WhatsInfinitySendTextOperator(
            task_id="send", to=RECIPIENTS, message="m", whatsinfinity_conn_id=conn_ids, **kwargs
        )
        context: Any = {"task_state_store": store, "ti": ti}
        try:
            return operator.execute(context) if event is None else operator.execute_complete(context, event)
        except TaskDeferred as deferred:
            trigger: Any = deferred.trigger
            moment = datetime.fromisoformat(trigger.moment)
            time.sleep(max((moment - datetime.now(timezone.utc)).total_seconds(), 0))
            event = {"state": trigger.state}
    raise AssertionError(f"still deferring after {limit} deferrals")


@pytest.mark.whatsinfinity_emulator(rate_limit=2, rate_window=8.0, typing_delay=0.0)
def test_a_session_refused_after_each_of_its_own_waits_hands_over_instead_of_failing_the_rest(
    whatsinfinity_emulator, monkeypatch
):
    # alpha is refused on every send with retryAfter 1 s: after 5 deferrals that each outlasted its
    # wait it is given up, and beta (whose window is 8 s) takes its recipients. Counted for all
    # sessions together, alpha's short refusals failed the whole task while beta could still send.
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.add_fault(
        "/send", "status", status=429, retryAfter=1, rate=1.0, bodyContains="alpha-session"
    )
    results = run_with_deferrals(conn_ids, Store(), TI(), deferrable=True, defer_threshold=0.5)
    assert sent(whatsinfinity_emulator) == Counter(RECIPIENTS)
    assert [r["whatsinfinity_conn_id"] for r in results] == ["wi_beta"] * 4
    assert [r.get("reassigned_from") for r in results] == ["wi_alpha", None, "wi_alpha", None]


def test_a_failed_session_is_kept_in_the_record_and_a_clear_starts_afresh(
    whatsinfinity_emulator, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.disable("alpha-session")
    store = Store()
    send(conn_ids, store, TI())
    record = store.values["whatsinfinity_delivery"]
    assert set(record["failed"]) == {"wi_alpha"}
    assert record["handed"] == {RECIPIENTS[0]: "wi_alpha", RECIPIENTS[2]: "wi_alpha"}
    assert set(record["sessions"].values()) == {"wi_beta"}
    cleared = TI()
    cleared.max_tries = 6  # a user's clear: a new run of the task instance sends the whole list again
    results = send(conn_ids, store, cleared)
    assert sent(whatsinfinity_emulator) == Counter(RECIPIENTS * 2)
    assert [r.get("reassigned_from") for r in results] == ["wi_alpha", None, "wi_alpha", None]


class FailsMarkingThirdPending(Store):
    """Answers 503 once: to the write that marks the third recipient (alpha's second send) pending."""

    failed = False

    def set(self, key: str, value: Any) -> None:
        if not self.failed and (value.get("sends") or {}).get(RECIPIENTS[2], {}).get("state") == "pending":
            self.failed = True
            raise RuntimeError("task_state_store: the API server answered 503")
        super().set(key, value)


def test_a_pending_mark_whose_write_failed_is_not_saved_by_a_later_write(whatsinfinity_emulator, monkeypatch):
    # The mark failed, so its request never left; beta's answer, recorded after, must not save the
    # mark with it, or the retry would take the third recipient for "maybe sent" and never send it.
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=1.0, times=1, bodyContains=RECIPIENTS[3])
    store = FailsMarkingThirdPending()
    with pytest.raises(RuntimeError, match="503"):
        send(conn_ids, store, TI())
    assert RECIPIENTS[2] not in store.values["whatsinfinity_delivery"]["sends"]
    send(conn_ids, store, TI())
    assert sent(whatsinfinity_emulator) == Counter(RECIPIENTS)


@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=40.0, typing_delay=0.0)
def test_a_stopping_send_does_not_wait_out_a_rate_limit_first(whatsinfinity_emulator, monkeypatch):
    # beta's request is on the wire when the send stops (a failed write in alpha); its answer is a
    # 429 for 40 s: the send stops there, without waiting 40 s to find out it must not send.
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=0.3, times=1, bodyContains=RECIPIENTS[0])
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=1.0, times=1, bodyContains=RECIPIENTS[3])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="503"):
        send(conn_ids, FailsMarkingThirdPending(), TI())
    assert time.monotonic() - started < 20  # not the 40 s wait


@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=10.0, typing_delay=0.0)
def test_after_an_unknown_outcome_a_session_waiting_out_a_refusal_sends_nobody(
    whatsinfinity_emulator, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=0.5, times=1, bodyContains=RECIPIENTS[0])
    whatsinfinity_emulator.add_fault("/send", "after", then="drop", times=1, bodyContains=RECIPIENTS[2])
    with pytest.raises(Exception, match="outcome unknown"):
        send(conn_ids, Store(), TI())
    assert sent(whatsinfinity_emulator)[RECIPIENTS[3]] == 0  # beta's second: not attempted


@pytest.mark.parametrize("case", ["a disabled one", "both"])
def test_sessions_refused_for_ever_end_the_task_instead_of_handing_recipients_back_and_forth(
    whatsinfinity_emulator, monkeypatch, case
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    whatsinfinity_emulator.add_fault(
        "/send", "status", status=429, retryAfter=1, rate=1.0, bodyContains="alpha-session"
    )
    if case == "a disabled one":
        whatsinfinity_emulator.disable("beta-session")
    else:
        for number in (RECIPIENTS[0], RECIPIENTS[3]):
            whatsinfinity_emulator.add_fault(
                "/send", "status", status=429, retryAfter=1, rate=1.0, bodyContains=number
            )
    with pytest.raises(RateLimitedError):  # transient: the task's retries apply
        run_with_deferrals(conn_ids, Store(), TI(), limit=22, deferrable=True, defer_threshold=0.5)


def test_a_dry_run_over_a_session_with_a_wrong_key_fails_instead_of_handing_over(
    whatsinfinity_emulator, monkeypatch
):
    conn_ids = sessions(whatsinfinity_emulator, monkeypatch, "alpha", "beta")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WI_ALPHA",
        connection_json(whatsinfinity_emulator.url, "alpha-session", "stale-key-0123456789"),
    )
    with pytest.raises(AirflowFailException, match="AuthenticationError"):
        send(conn_ids, Store(), TI(), dry_run=True)
