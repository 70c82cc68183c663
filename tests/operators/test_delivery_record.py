"""
The send operators' delivery record: skip what an earlier try sent, never resend a maybe, lose nobody.

A try is one ``execute`` with the task's ``task_state_store`` (a dict-backed stand-in with the same
``get``/``set``/``delete``); a retry is another ``execute`` with the same store.
"""

from __future__ import annotations

import signal
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_whatsinfinity._compat import AirflowException, AirflowFailException
from airflow_provider_whatsinfinity.client import RetrySettings
from airflow_provider_whatsinfinity.exceptions import QueueFullError
from airflow_provider_whatsinfinity.operators.whatsinfinity import (
    WhatsInfinityRotateKeyOperator,
    WhatsInfinitySendMediaOperator,
    WhatsInfinitySendTextOperator,
)
from tests.common import KEY, PHONE, captured_logs, connection_json

OTHER = "447700900123"
THIRD = "15550109999"
FOURTH = "4915112345678"
RECORD_KEY = "whatsinfinity_delivery"


class Store:
    """What context["task_state_store"] offers: get, set, delete; kept across tries of one task."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes: list[Any] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value
        written = {k: v.get("state") if isinstance(v, dict) else v for k, v in value["sends"].items()}
        self.writes.append({**written, "completed": value["completed"]} if "completed" in value else written)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class TI:
    """The one field of the task instance the record reads: max_tries, kept by retries, changed by a clear."""

    def __init__(self, max_tries: int = 3) -> None:
        self.max_tries = max_tries


def send(store: Store, to: Any, message: str = "hello", ti: TI | None = None, **kwargs: Any) -> Any:
    operator = WhatsInfinitySendTextOperator(task_id="send", to=to, message=message, **kwargs)
    return operator.execute({"task_state_store": store, "ti": ti or TI()})  # type: ignore[typeddict-item]


def delivered(emulator) -> list[str]:
    return [m["to"] for m in emulator.outbox()]


def test_each_recipient_is_marked_pending_as_its_request_leaves(hook, linked):
    store = Store()
    send(store, [PHONE, OTHER])
    assert store.writes == [
        {PHONE: "pending"},
        {PHONE: "sent"},
        {PHONE: "sent", OTHER: "pending"},
        {PHONE: "sent", OTHER: "sent"},
        {PHONE: "sent", OTHER: "sent", "completed": 3},  # stamped with the run's max_tries
    ]


def test_clearing_a_successful_task_sends_again(hook, linked):
    store = Store()
    send(store, [PHONE], "v1", ti=TI(max_tries=3))
    send(store, [PHONE], "v2", ti=TI(max_tries=4))  # a clear sets max_tries = try_number + retries
    assert [m["message"] for m in linked.outbox()] == ["v1", "v2"]


def test_a_task_that_fails_after_sending_everything_sends_nobody_again_on_retry(hook, linked):
    # execute returned, then post_execute or the XCom push failed: Airflow retries the same run.
    store = Store()
    first = send(store, [PHONE, OTHER], "v1")
    again = send(store, [PHONE, OTHER], "v1")
    assert delivered(linked) == [PHONE, OTHER]
    assert again == first  # the retry reports what the first try sent


def test_a_retry_skips_what_was_sent_and_reports_what_may_have_been(hook, linked):
    store = Store()
    sent = {"message_id": "3EB0EARLIER", "queued": False, "dry_run": False, "request_id": "r", "to": PHONE}
    store.values[RECORD_KEY] = {
        "sends": {PHONE: {"state": "sent", "result": sent}, OTHER: {"state": "pending"}}
    }
    with pytest.raises(AirflowFailException, match="may have sent it") as raised:
        send(store, [PHONE, OTHER, THIRD])
    assert "1 of 3 recipients not sent" in str(raised.value)
    assert delivered(linked) == [THIRD]


# Nothing marked before the request leaves: what fails locally is sent on the next try ------------


def test_a_connection_missing_for_a_moment_loses_nobody(linked, monkeypatch):
    store = Store()
    monkeypatch.delenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", raising=False)
    with pytest.raises(Exception, match="whatsinfinity_default"):
        send(store, [PHONE, OTHER])
    assert store.writes == []
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(linked.url))
    send(store, [PHONE, OTHER])  # the retry, once the connection is back
    assert delivered(linked) == [PHONE, OTHER]


def test_a_bad_flag_marks_nobody(hook, linked):
    store = Store()
    with pytest.raises(AirflowFailException, match="typing must be true or false"):
        send(store, [PHONE], typing="sometimes")
    assert store.writes == []
    send(store, [PHONE], typing="true")  # the DAG fixed and the task cleared
    assert delivered(linked) == [PHONE]


def test_text_that_cannot_be_encoded_is_a_clear_error_and_marks_nobody(hook, linked):
    store = Store()
    with pytest.raises(AirflowFailException, match="lone UTF-16 surrogate") as raised:
        send(store, [PHONE, OTHER], message="rows: \udce9")
    assert "UnicodeEncodeError" not in str(raised.value)
    assert linked.requests("/send") == []
    send(store, [PHONE, OTHER], message="rows: é")
    assert delivered(linked) == [PHONE, OTHER]


class FlakySigner(MemoryFileSystem):
    """An object store whose first signature fails the way a network blip to the store would."""

    protocol = "gs"
    root_marker = ""
    base_url = "http://127.0.0.1:9"
    calls = 0

    def sign(self, path, expiration=100, **kwargs):
        FlakySigner.calls += 1
        if FlakySigner.calls == 1:
            raise ConnectionError("storage.googleapis.com: connection reset")
        return f"{self.base_url}/{path.rsplit('/', 1)[-1]}?X-Signature=abc"


def test_a_transient_error_while_signing_marks_nobody(hook, linked, monkeypatch):
    from fsspec.registry import _registry

    monkeypatch.setitem(_registry, "gs", FlakySigner)
    fsspec.config.conf.pop("gs", None)
    FlakySigner.calls = 0
    store = Store()

    def media() -> Any:
        operator = WhatsInfinitySendMediaOperator(task_id="send", to=[PHONE], url="gs://reports/q3.pdf")
        return operator.execute({"task_state_store": store})  # type: ignore[typeddict-item]

    with pytest.raises(ConnectionError):
        media()  # a plain error: Airflow's retries apply
    assert store.writes == []
    media()
    assert [m["url"] for m in linked.outbox()] == ["http://127.0.0.1:9/q3.pdf?X-Signature=abc"]


def test_a_media_url_in_capitals_is_sent(hook, linked):
    operator = WhatsInfinitySendMediaOperator(
        task_id="send", to=PHONE, url="HTTPS://files.example.com/q3.pdf"
    )
    operator.execute({})
    assert [m["url"] for m in linked.outbox()] == ["HTTPS://files.example.com/q3.pdf"]


# Keyed by number, not by position ------------------------------------------------------------


def test_a_retry_that_gets_the_list_in_another_order_sends_nobody_twice(hook, linked):
    store = Store()
    # The third send is refused as "queue full" until the client's four attempts are spent.
    linked.add_fault("/send", "status", status=503, times=4, bodyContains=THIRD)
    with pytest.raises(QueueFullError):
        send(store, [PHONE, OTHER, THIRD, FOURTH])
    assert delivered(linked) == [PHONE, OTHER]
    results = send(store, [FOURTH, THIRD, OTHER, PHONE])  # list(set(...)) parsed with another seed
    assert sorted(delivered(linked)) == sorted([PHONE, OTHER, THIRD, FOURTH])  # each exactly once
    assert [r["to"] for r in results] == [FOURTH, THIRD, OTHER, PHONE]


def test_two_spellings_of_one_number_are_sent_once_and_the_merge_is_logged(hook, linked):
    spelled = "+91 99999-99999"
    with captured_logs() as logs:  # structlog on Airflow 3.1+, logging on 3.0
        results = send(Store(), [spelled, OTHER, PHONE])
    assert delivered(linked) == [PHONE, OTHER]
    assert results[0] == results[2]  # both positions report the one send
    merged = f"'{spelled}' and '{PHONE}' are the same number {PHONE}: sent once"
    assert any(merged in e["event"] for e in logs), logs


def test_a_number_listed_twice_on_purpose_is_sent_twice_and_resumes_by_occurrence(hook, linked):
    store = Store()
    linked.add_fault("/send", "status", status=503, times=4, bodyContains=OTHER)
    with pytest.raises(QueueFullError):
        send(store, [PHONE, OTHER, PHONE])
    assert delivered(linked) == [PHONE]
    send(store, [PHONE, PHONE, OTHER])
    assert delivered(linked) == [PHONE, PHONE, OTHER]


def test_a_record_written_before_the_upgrade_is_still_honoured(hook, linked):
    store = Store()
    sent = {"message_id": "3EB0EARLIER", "queued": False, "dry_run": False, "request_id": "r", "to": PHONE}
    store.values["whatsinfinity_accepted"] = {
        f"0:{PHONE}": {"state": "sent", "result": sent},
        f"1:{OTHER}": {"state": "pending"},
    }
    with pytest.raises(AirflowFailException, match="1 of 3 recipients not sent"):
        send(store, [OTHER, THIRD, PHONE])
    assert delivered(linked) == [THIRD]
    assert "whatsinfinity_accepted" not in store.values  # read once, carried over
    assert store.values[RECORD_KEY]["sends"][PHONE]["state"] == "sent"


# Through a proxy that loses answers ----------------------------------------------------------


def test_a_proxys_plain_503_fails_the_task_without_retries_and_a_rerun_sends_nobody_twice(
    linked, proxy, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(proxy.url))
    proxy.lose_answer("/send")
    store = Store()
    with pytest.raises(AirflowFailException, match="outcome unknown"):
        send(store, [PHONE])
    proxy.behave()
    with pytest.raises(AirflowFailException, match="may have sent it"):
        send(store, [PHONE])
    assert delivered(linked) == [PHONE]  # once, not four (client retries) or ten (task retries) times


def test_an_operator_closes_its_connection_pool_when_done(hook, linked):
    operator = WhatsInfinitySendTextOperator(task_id="send", to=PHONE, message="hi")
    operator.execute({})
    assert "hook" not in operator.__dict__  # the hook and its client's pool were closed and dropped
    linked.mark_unregistered(OTHER)
    failing = WhatsInfinitySendTextOperator(task_id="send", to=OTHER, message="hi")
    with pytest.raises(AirflowFailException):
        failing.execute({})
    assert "hook" not in failing.__dict__


# A rotate-key whose answer was lost ------------------------------------------------------------


def rotate(stored: list[str]) -> None:
    operator = WhatsInfinityRotateKeyOperator(
        task_id="rotate",
        store_new_key=lambda key, ctx: stored.append(key),
        hook_params={"timeout": 1},  # the operator waits this long before checking the old key
    )
    operator.execute({})


def test_a_lost_rotation_that_took_effect_says_the_key_is_lost_and_how_to_recover(linked, proxy, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(proxy.url))
    proxy.lose_answer("/rotate-key")
    stored: list[str] = []
    with pytest.raises(AirflowFailException) as raised:
        rotate(stored)
    text = str(raised.value)
    assert "answer was lost" in text
    assert "the service refuses the old key" in text
    assert "create a new session under a new session ID" in text
    assert stored == []
    assert KEY not in text
    assert proxy.forwarded.count("/rotate-key") == 1  # never tried a second time


def test_a_lost_rotation_that_never_arrived_leaves_the_session_usable(linked, proxy, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(proxy.url))
    proxy.refuse("/rotate-key")
    stored: list[str] = []
    with pytest.raises(AirflowFailException, match=r"old key .* still works .* the key was not changed"):
        rotate(stored)
    assert stored == []
    proxy.behave()
    rotate(stored)  # the task run again: the session was never locked out
    assert len(stored) == 1
    assert linked.outbox() == []


# A mark that outlives its request; a record that cannot be read; answers being lost ---------------


class Timeout(Exception):
    """Stands in for AirflowTaskTimeout, raised by a signal wherever the task happens to be."""


@pytest.fixture
def task_timeout():
    """Arm a timer that raises Timeout in the main thread, as execution_timeout does."""

    def handler(signum, frame):
        raise Timeout("execution_timeout")

    previous = signal.signal(signal.SIGALRM, handler)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("fault", [{"status": 429}, {"status": 503}], ids=["rate limited", "queue full"])
def test_a_task_timeout_while_waiting_out_a_refusal_loses_nobody(
    hook, linked, task_timeout, fault, monkeypatch
):
    # Full jitter could draw a pause shorter than the timer: take the longest, so the timer fires in it.
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    store = Store()
    linked.add_fault("/send", "status", times=1, retryAfter=5, **fault)  # the client waits ~5 s or backs off
    slow_backoff = {"retry": RetrySettings(backoff_base=5, backoff_max=5)}
    hook_params = slow_backoff if fault["status"] == 503 else {}
    task_timeout(0.5)
    with pytest.raises(Timeout):
        send(store, [PHONE], hook_params=hook_params)
    assert linked.outbox() == []  # the service only ever refused it
    send(store, [PHONE])  # the retry: it was certainly not sent, so it is sent now
    assert delivered(linked) == [PHONE]


def test_an_unreadable_record_stops_the_task_before_any_send(hook, linked):
    store = Store()
    store.values[RECORD_KEY] = '{"sends": {}}'  # a backend that hands back text
    with pytest.raises(AirflowFailException, match="cannot be read"):
        send(store, [PHONE])
    assert linked.requests("/send") == []


@pytest.mark.parametrize("entry", ["pending", {"state": "in_flight"}, {"state": None}, {}])
def test_an_entry_that_cannot_be_read_counts_as_maybe_sent(hook, linked, entry):
    store = Store()
    store.values[RECORD_KEY] = {"sends": {PHONE: entry}}
    with pytest.raises(AirflowFailException, match="may have sent it"):
        send(store, [PHONE, OTHER])
    assert delivered(linked) == [OTHER]


def test_answers_being_lost_stop_the_list_and_a_retry_sends_the_rest(linked, proxy, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(proxy.url))
    proxy.answer("/send", 502, b"<html>Bad Gateway</html>", "text/html")  # an outage at the gateway
    store = Store()
    with pytest.raises(AirflowException, match="a retry sends to those not attempted") as raised:
        send(store, [PHONE, OTHER, THIRD])
    assert not isinstance(raised.value, AirflowFailException)  # Airflow's retries apply
    assert proxy.forwarded == []
    proxy.behave()
    with pytest.raises(AirflowFailException, match="1 of 3 recipients not sent"):
        send(store, [PHONE, OTHER, THIRD])  # the retry
    assert delivered(linked) == [OTHER, THIRD]  # never the one whose outcome was unknown


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{}", "application/json"),
        (b'{"status": "ok"}', "application/json"),
        (b"\x89PNG", "image/png"),
        (b'{"success": true, "data": {"note": "no queued"}}', "application/json"),
    ],
    ids=["empty object", "other shape", "an image", "no queued flag"],
)
def test_a_2xx_that_is_not_the_apis_answer_is_not_a_delivery(linked, proxy, monkeypatch, body, content_type):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(proxy.url))
    proxy.answer("/send", 200, body, content_type)
    store = Store()
    with pytest.raises(AirflowFailException, match="outcome unknown"):
        send(store, [PHONE])
    assert store.values[RECORD_KEY]["sends"][PHONE]["state"] == "unknown"
