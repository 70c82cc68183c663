"""
A deferrable list send, one execution at a time: what it carries to the triggerer, and how it resumes.

``execute`` raises ``TaskDeferred`` as it does in a worker; ``execute_complete`` is called with the
trigger's event, as Airflow calls it after the triggerer fired. The record is the stand-in
``task_state_store`` of tests/operators/test_delivery_record.py, kept across executions.
"""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.exceptions import QueueFullError, RateLimitedError
from airflow_provider_whatsinfinity.operators.send import MAX_DEFERRALS_WITHOUT_PROGRESS
from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator
from airflow_provider_whatsinfinity.triggers.rate_window import WhatsInfinityRateWindowTrigger
from tests.common import PHONE
from tests.operators.test_delivery_record import FOURTH, OTHER, THIRD, TI, Store

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.0
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

RECIPIENTS = [PHONE, OTHER, THIRD, FOURTH]

#: Two sends per 30-second window: the third waits far beyond the threshold.
pytestmark = pytest.mark.whatsinfinity_emulator(rate_limit=2, rate_window=30, typing_delay=0.0)


def _operator(**kwargs):
    return WhatsInfinitySendTextOperator(
        task_id="send", to=RECIPIENTS, message="hello", deferrable=True, defer_threshold=1, **kwargs
    )


def test_a_deferral_carries_counters_and_never_a_phone_number(hook, linked):
    store = Store()
    with pytest.raises(TaskDeferred) as deferred:
        _operator().execute({"task_state_store": store, "ti": TI()})
    trigger = deferred.value.trigger
    assert isinstance(trigger, WhatsInfinityRateWindowTrigger)
    assert trigger.state["sent"] == 2
    assert trigger.state["idle"] == {"whatsinfinity_default": 0}  # it sent two before the refusal
    assert trigger.state["due"]["whatsinfinity_default"] > time.time() + 20  # its window
    # The triggerer stores the kwargs and logs the event: no number of the list in either.
    serialized = json.dumps(trigger.serialize())
    assert not [number for number in RECIPIENTS if number in serialized]
    assert deferred.value.method_name == "execute_complete"
    assert [m["to"] for m in linked.outbox()] == RECIPIENTS[:2]


def test_a_resume_before_the_sessions_own_wait_ended_is_not_counted_idle(hook, linked):
    store = Store()
    context = {"task_state_store": store, "ti": TI()}
    with pytest.raises(TaskDeferred) as first:
        _operator().execute(context)
    with pytest.raises(TaskDeferred) as second:
        _operator().execute_complete(context, event={"state": first.value.trigger.state})
    # Resumed inside the window (the trigger did not wait here): the refusal is not counted again.
    assert second.value.trigger.state["idle"] == {"whatsinfinity_default": 0}
    assert second.value.trigger.state["sent"] == 2
    assert [m["to"] for m in linked.outbox()] == RECIPIENTS[:2]  # nobody twice


def test_too_many_idle_deferrals_fail_the_task_for_its_retries(hook, linked):
    store = Store()
    context = {"task_state_store": store, "ti": TI()}
    with pytest.raises(TaskDeferred):
        _operator().execute(context)
    # Resumed after its own wait passed, and refused again: one idle deferral too many.
    state = {"idle": {"whatsinfinity_default": MAX_DEFERRALS_WITHOUT_PROGRESS}, "due": {}, "sent": 2}
    with pytest.raises(RateLimitedError):  # transient: the task's retries apply
        _operator().execute_complete(context, event={"state": state})
    assert [m["to"] for m in linked.outbox()] == RECIPIENTS[:2]


def test_a_resume_that_reads_back_fewer_sends_than_it_deferred_with_sends_nobody(hook, linked):
    # The record was lost between the deferral and the resume (a Variable deleted, a store that
    # answers empty): resuming from it would send the first two again.
    store = Store()
    with pytest.raises(AirflowFailException, match="could not be read back"):
        _operator().execute_complete(
            {"task_state_store": store, "ti": TI()}, event={"state": {"idle": {}, "due": {}, "sent": 2}}
        )
    assert linked.requests("/send") == []


@pytest.mark.whatsinfinity_emulator(rate_limit=100, rate_window=30, typing_delay=0.0)
def test_a_full_queue_defers_for_the_queue_to_drain(hook, linked):
    # Every attempt at the third send finds the queue full (the client's own retries too).
    linked.add_fault("/send", "status", status=503, bodyContains=THIRD)
    store = Store()
    with pytest.raises(TaskDeferred) as deferred:
        _operator(hook_params={"max_attempts": 1}).execute({"task_state_store": store, "ti": TI()})
    assert deferred.value.trigger.state["sent"] == 2  # the list waits at the third
    assert [m["to"] for m in linked.outbox()] == [PHONE, OTHER]
    assert store.values["whatsinfinity_delivery"]["sends"].keys() == {PHONE, OTHER}  # refused: forgotten


def test_a_send_without_a_task_instance_never_defers(hook, linked):
    # execute() called by hand: nothing could resume it, so it waits as a blocking send does, here
    # within a max_rate_limit_wait of 1 s: the rate limit is raised, not deferred.
    with pytest.raises(RateLimitedError):
        _operator(hook_params={"max_rate_limit_wait": 1}).execute({"task_state_store": Store()})


def test_the_trigger_refuses_a_moment_without_a_zone():
    with pytest.raises(ValueError, match="time zone"):
        WhatsInfinityRateWindowTrigger(moment="2026-11-26T10:00:00", state={})
    assert QueueFullError.transient
