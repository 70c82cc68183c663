"""The send operators' record in task_state_store: skip what an earlier try sent, never resend a maybe."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_whatsinfinity.operators.whatsinfinity import ACCEPTED_KEY, WhatsInfinitySendTextOperator
from tests.conftest import PHONE

OTHER = "447700900123"


class Store:
    """What context["task_state_store"] offers: get, set, delete; kept across tries of one task."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes: list[Any] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.writes.append({k: v.get("state") for k, v in value.items()})

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def send(store: Store, to: list[str], message: str = "hello") -> Any:
    operator = WhatsInfinitySendTextOperator(task_id="send", to=to, message=message)
    return operator.execute({"task_state_store": store})  # type: ignore[typeddict-item]


def test_each_recipient_is_marked_pending_before_its_request(hook, linked):
    store = Store()
    send(store, [PHONE, OTHER])
    assert store.writes == [
        {f"0:{PHONE}": "pending"},
        {f"0:{PHONE}": "sent"},
        {f"0:{PHONE}": "sent", f"1:{OTHER}": "pending"},
        {f"0:{PHONE}": "sent", f"1:{OTHER}": "sent"},
    ]
    assert ACCEPTED_KEY not in store.values  # cleared after a full success


def test_clearing_a_successful_task_sends_again(hook, linked):
    store = Store()
    send(store, [PHONE], "v1")
    send(store, [PHONE], "v2")
    assert [m["message"] for m in linked.outbox()] == ["v1", "v2"]


def test_a_retry_skips_what_was_sent_and_reports_what_may_have_been(hook, linked):
    store = Store()
    sent = {"message_id": "3EB0EARLIER", "queued": False, "dry_run": False, "request_id": "r", "to": PHONE}
    store.values[ACCEPTED_KEY] = {
        f"0:{PHONE}": {"state": "sent", "result": sent},
        f"1:{OTHER}": {"state": "pending"},
    }
    with pytest.raises(AirflowFailException, match="may have sent it") as raised:
        send(store, [PHONE, OTHER, "15550109999"])
    assert "1 of 3 recipients not sent" in str(raised.value)
    assert [m["to"] for m in linked.outbox()] == ["15550109999"]


def test_an_operator_closes_its_connection_pool_when_done(hook, linked):
    operator = WhatsInfinitySendTextOperator(task_id="send", to=PHONE, message="hi")
    operator.execute({})
    assert "hook" not in operator.__dict__  # the hook and its client's pool were closed and dropped
    linked.mark_unregistered(OTHER)
    failing = WhatsInfinitySendTextOperator(task_id="send", to=OTHER, message="hi")
    with pytest.raises(AirflowFailException):
        failing.execute({})
    assert "hook" not in failing.__dict__
