"""Alert storms: the notifier's rate-limit budget, digests, and an ERROR line for every alert not sent."""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import datetime

import pytest
from airflow.sdk import DAG

from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, RateLimitedError
from airflow_provider_whatsinfinity.notifications import postbox
from airflow_provider_whatsinfinity.notifications.postbox import AlertPostbox
from airflow_provider_whatsinfinity.notifications.whatsinfinity import WhatsInfinityNotifier
from tests.common import KEY, PHONE, captured_logs
from tests.notifications.conftest import needs_async_notifiers, notify_raises

DAG_ID = "storm"
RUN = re.compile(r"run (storm_\d\d)")


class FakeTI:
    try_number = 1

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id


def context(index: int, **extra):
    dag = DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1))
    return {"dag": dag, "ti": FakeTI(f"t{index:02d}"), "run_id": f"storm_{index:02d}", **extra}


@pytest.fixture(autouse=True)
def fresh_postbox(monkeypatch):
    """Each test starts with a postbox that knows no rate window (emulators may reuse a port)."""
    monkeypatch.setattr(postbox, "POSTBOX", AlertPostbox())


def runs_in(outbox) -> list[str]:
    return sorted(run for message in outbox for run in RUN.findall(message["message"]))


def errors(logs) -> list[str]:
    return [entry["event"] for entry in logs if entry["log_level"] == "error"]


def send_together_async(notifiers_and_contexts) -> list[BaseException | None]:
    async def one(notifier, ctx):
        notifier.context = ctx
        await notifier

    async def run():
        return await asyncio.gather(*(one(n, c) for n, c in notifiers_and_contexts), return_exceptions=True)

    return asyncio.run(run())


def send_together_in_threads(notifiers_and_contexts) -> list[BaseException | None]:
    start = threading.Barrier(len(notifiers_and_contexts))
    raised: list[BaseException | None] = [None] * len(notifiers_and_contexts)

    def one(index, notifier, ctx):
        start.wait()
        try:
            notifier(ctx)
        except Exception as error:
            raised[index] = error

    threads = [
        threading.Thread(target=one, args=(i, n, c)) for i, (n, c) in enumerate(notifiers_and_contexts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return raised


@pytest.mark.parametrize("digest", [True, False])
@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=1)
def test_max_rate_limit_wait_is_the_alerts_own_budget(hook, linked, digest):
    WhatsInfinityNotifier(to=PHONE, message="first")(context(1))
    with captured_logs() as logs, notify_raises(RateLimitedError, match="max_rate_limit_wait"):
        WhatsInfinityNotifier(to=PHONE, max_rate_limit_wait=0.5, digest=digest)(context(2))
    # The one that certainly did not go out is named at ERROR level: DAG, task, run, recipient, why.
    [line, *_] = errors(logs)
    assert "DAG storm, task t02 (try 1), run storm_02 NOT sent to 919999999999" in line
    assert "rate limited" in line
    assert KEY not in str(logs)
    WhatsInfinityNotifier(to=PHONE, message="third", max_rate_limit_wait=5, digest=digest)(context(3))
    assert [m["message"] for m in linked.outbox()] == ["first", "third"]


@needs_async_notifiers
@pytest.mark.whatsinfinity_emulator(rate_limit=3, rate_window=1)
def test_alerts_waiting_for_one_window_leave_as_one_digest_from_the_triggerer(hook, linked):
    alerts = [(WhatsInfinityNotifier(to=PHONE), context(i)) for i in range(8)]
    with captured_logs() as logs:
        raised = send_together_async(alerts)
    assert raised == [None] * 8
    outbox = linked.outbox()
    # Three fill the window; the five that met a 429 leave together when it opens again.
    assert len(outbox) == 4
    assert runs_in(outbox) == [f"storm_{i:02d}" for i in range(8)]  # each once: none lost, none twice
    [digest] = [m["message"] for m in outbox if "Airflow alerts" in m["message"]]
    assert digest.startswith(
        "5 Airflow alerts, held back by the WhatsApp rate limit and sent together:\n\n[1/5] "
    )
    carried = [e["event"] for e in logs if "in a digest of 5 alerts" in e["event"]]
    assert len(carried) == 5
    assert errors(logs) == []


@pytest.mark.whatsinfinity_emulator(rate_limit=3, rate_window=1)
def test_alerts_from_threads_fold_the_same_way(hook, linked):
    raised = send_together_in_threads([(WhatsInfinityNotifier(to=PHONE), context(i)) for i in range(8)])
    assert raised == [None] * 8
    outbox = linked.outbox()
    assert len(outbox) == 4
    assert runs_in(outbox) == [f"storm_{i:02d}" for i in range(8)]


@needs_async_notifiers
@pytest.mark.whatsinfinity_emulator(rate_limit=3, rate_window=1)
def test_without_digest_each_alert_goes_alone(hook, linked):
    alerts = [(WhatsInfinityNotifier(to=PHONE, digest=False), context(i)) for i in range(5)]
    assert send_together_async(alerts) == [None] * 5
    outbox = linked.outbox()
    assert len(outbox) == 5
    assert runs_in(outbox) == [f"storm_{i:02d}" for i in range(5)]


@needs_async_notifiers
@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=1)
def test_a_digest_whose_outcome_is_unknown_is_never_sent_again(hook, linked):
    WhatsInfinityNotifier(to=PHONE, message="fills the window")(context(0))
    # The digest is delivered, then its connection drops before the answer: outcome unknown.
    linked.add_fault("/send", "after", then="drop", times=1, bodyContains="Airflow alerts, held back")
    alerts = [(WhatsInfinityNotifier(to=PHONE), context(i)) for i in (1, 2, 3)]
    with captured_logs() as logs:
        raised = send_together_async(alerts)
    assert all(isinstance(error, OutcomeUnknownError) for error in raised)
    outbox = linked.outbox()
    assert len(outbox) == 2
    assert runs_in(outbox) == ["storm_01", "storm_02", "storm_03"]
    lines = errors(logs)
    for i in (1, 2, 3):
        [line] = [e for e in lines if f"run storm_{i:02d} to 919999999999 may or may not have gone out" in e]
        assert "in a digest of 3 alerts, so it is not sent again" in line
    # Three 429s, then the one digest: nothing was sent again after the unknown outcome.
    sends = linked.requests("/send")
    assert [r["status"] for r in sends][-1] != 429
    assert len([r for r in sends if r["status"] != 429]) == 2


@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=1)
def test_an_alert_cancelled_while_it_waits_is_logged_and_never_sent(hook, linked):
    WhatsInfinityNotifier(to=PHONE, message="fills the window")(context(0))
    notifier = WhatsInfinityNotifier(to=PHONE, max_rate_limit_wait=10)
    notifier.context = context(1)

    async def run():
        task = asyncio.ensure_future(notifier.async_notify(notifier.context))
        await asyncio.sleep(0.3)  # it met the 429 and waits for the window
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.0)  # the window has opened again: nothing else goes out

    with captured_logs() as logs:
        asyncio.run(run())
    [line] = errors(logs)
    assert "run storm_01 NOT sent to 919999999999" in line
    assert "stopped while waiting for the rate limit; nothing was sent" in line
    assert [m["message"] for m in linked.outbox()] == ["fills the window"]


@needs_async_notifiers
@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=1)
def test_a_digest_refused_for_good_names_every_alert_it_carried(hook, linked):
    WhatsInfinityNotifier(to=PHONE, message="fills the window")(context(0))
    # The digest is refused before it is handled: certainly not sent, so every alert in it says so.
    linked.add_fault("/send", "status", status=422, times=1, bodyContains="Airflow alerts, held back")
    with captured_logs() as logs:
        raised = send_together_async([(WhatsInfinityNotifier(to=PHONE), context(i)) for i in (1, 2)])
    assert all(type(error).__name__ == "NotOnWhatsAppError" for error in raised)
    lines = errors(logs)
    for i in (1, 2):
        assert any(f"run storm_{i:02d} NOT sent to 919999999999 in a digest of 2 alerts" in e for e in lines)
    assert [m["message"] for m in linked.outbox()] == ["fills the window"]


@needs_async_notifiers
@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=1)
def test_a_digest_carries_only_what_fits_in_one_message(hook, linked):
    from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length

    WhatsInfinityNotifier(to=PHONE, message="fills the window")(context(0))
    alerts = [
        (WhatsInfinityNotifier(to=PHONE), context(i, exception=RuntimeError(f"{i}" * 30_000)))
        for i in (1, 2, 3)
    ]
    assert send_together_async(alerts) == [None] * 3
    outbox = linked.outbox()
    # Two 30,000-character alerts fit in one digest; the third waits for the next window.
    assert [m["message"][:16] for m in outbox] == ["fills the window", "2 Airflow alerts", "Airflow alert: D"]
    assert all(text_length(m["message"]) <= MAX_MESSAGE_LENGTH for m in outbox)
    assert runs_in(outbox) == ["storm_01", "storm_02", "storm_03"]
