"""
Soak under faults: each fault mode hits 30% of /send while 200 messages go through the operator.

Every message is delivered exactly once, or reported as outcome unknown (and then delivered at most
once); none is delivered twice, and the totals reconcile with what the emulated phone received.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.client import RetrySettings
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, WhatsInfinityError
from airflow_provider_whatsinfinity.operators.whatsinfinity import WhatsInfinitySendTextOperator
from tests.common import KEY, PHONE, SESSION

MESSAGES = 200
FAST = RetrySettings(backoff_base=0.005, backoff_max=0.02)

MODES: dict[str, dict[str, Any]] = {
    "status-503": {"mode": "status", "status": 503},  # refused before acting: retried, all delivered
    "status-500": {"mode": "status", "status": 500},  # refused, but a 500 on a send is outcome unknown
    "drop": {"mode": "drop"},  # connection closed before acting: outcome unknown, nothing delivered
    "delay": {"mode": "delay", "seconds": 0.02},  # slow but fine
    "after-500": {"mode": "after", "then": "status"},  # acted, answer lost: unknown, delivered once
    "after-drop": {"mode": "after", "then": "drop"},
}


@pytest.mark.whatsinfinity_emulator(rate_limit=100_000, typing_delay=0.0)
@pytest.mark.parametrize("fault", list(MODES), ids=list(MODES))
def test_200_messages_under_30_percent_faults(hook, whatsinfinity_emulator, fault):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.add_fault("/send", rate=0.3, seed=20261124, **MODES[fault])
    accepted: dict[str, str] = {}  # message text -> messageId
    unknown: list[str] = []
    failed: list[str] = []
    causes: list[BaseException | None] = []
    for number in range(MESSAGES):
        text = f"soak {fault} #{number:03d}"
        operator = WhatsInfinitySendTextOperator(
            task_id=f"send_{number}", to=PHONE, message=text, hook_params={"retry": FAST}
        )
        try:
            result = operator.execute({})
            assert isinstance(result, dict)
        except AirflowFailException as failure:
            unknown.append(text)
            causes.append(failure.__cause__)
        except WhatsInfinityError as error:
            failed.append(text)  # attempts ran out: never sent, Airflow would retry it
            causes.append(error)
        else:
            accepted[text] = result["message_id"]
    assert all(isinstance(c, OutcomeUnknownError) or getattr(c, "transient", False) for c in causes), causes

    outbox = whatsinfinity_emulator.outbox()
    received = Counter(m["message"] for m in outbox)
    [injected] = whatsinfinity_emulator.faults()
    assert len(accepted) + len(unknown) + len(failed) == MESSAGES
    assert all(count == 1 for count in received.values()), "a message was delivered twice"
    assert {m["message"]: m["messageId"] for m in outbox if m["message"] in accepted} == accepted
    assert set(received) <= set(accepted) | set(unknown)
    assert not set(received) & set(failed)
    assert 30 <= injected["fired"] <= 100  # roughly 30% of the sends and their retries
    if fault in ("status-503", "delay"):
        assert not unknown
    if fault in ("status-500", "drop"):
        assert not set(received) & set(unknown)  # refused or dropped before acting: never delivered
    if fault.startswith("after"):
        assert set(unknown) <= set(received)  # acted, then the answer was lost: delivered once
        assert unknown
    if fault != "status-503":
        assert not failed
