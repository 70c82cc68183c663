"""The session-ready trigger: serialize round trip and its JSON events, against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionReadyTrigger
from tests.common import KEY, SESSION, connection_json


def first_event(trigger: WhatsInfinitySessionReadyTrigger, timeout: float = 20) -> Any:
    async def run():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    payload = asyncio.run(asyncio.wait_for(run(), timeout))
    assert json.loads(json.dumps(payload)) == payload  # plain JSON, nothing pickled
    return payload


@pytest.fixture
def conn(whatsinfinity_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    return whatsinfinity_emulator


def test_serialize_round_trip():
    trigger = WhatsInfinitySessionReadyTrigger("my_conn", poke_interval=7, timeout_at=1_900_000_000.5)
    classpath, kwargs = trigger.serialize()
    assert (
        classpath == "airflow_provider_whatsinfinity.triggers.whatsinfinity.WhatsInfinitySessionReadyTrigger"
    )
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert (rebuilt.whatsinfinity_conn_id, rebuilt.poke_interval, rebuilt.timeout_at) == (
        "my_conn",
        7.0,
        1_900_000_000.5,
    )


@pytest.mark.whatsinfinity_emulator(auto_link=0.6)
def test_ready_event_once_the_session_links(whatsinfinity_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.create_session(SESSION, KEY)
    event = first_event(WhatsInfinitySessionReadyTrigger(poke_interval=0.2))
    assert event["outcome"] == "ready"
    assert event["error"] is None
    assert (event["session"]["session_id"], event["session"]["is_ready"]) == (SESSION, True)
    assert len(whatsinfinity_emulator.requests(f"/check-session/{SESSION}")) >= 2


def test_disabled_event(conn):
    conn.create_session(SESSION, KEY)
    conn.disable(SESSION)
    event = first_event(WhatsInfinitySessionReadyTrigger(poke_interval=0.1))
    assert (event["outcome"], event["session"]["status"]) == ("disabled", "disabled")


def test_error_event_for_a_permanent_error(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    wrong = connection_json(whatsinfinity_emulator.url, password="wrong-key-0123456789")
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", wrong)
    event = first_event(WhatsInfinitySessionReadyTrigger(poke_interval=0.1))
    assert event["outcome"] == "error"
    assert event["error"]["type"] == "AuthenticationError"
    assert event["error"]["status_code"] == 401
    assert event["error"]["request_id"]
    assert "wrong-key" not in json.dumps(event)


def test_timeout_event(conn):
    conn.create_session(SESSION, KEY)
    started = time.monotonic()
    event = first_event(WhatsInfinitySessionReadyTrigger(poke_interval=0.2, timeout_at=time.time() + 0.7))
    assert event["outcome"] == "timeout"
    assert event["session"]["status"] == "qr"
    assert 0.6 <= time.monotonic() - started < 3


def test_transient_errors_are_polled_through(conn):
    conn.create_session(SESSION, KEY, link=True)
    # Enough server errors to exhaust the client's own attempts once: the trigger logs and polls again.
    conn.add_fault("/check-session", "status", status=502, times=4)
    event = first_event(WhatsInfinitySessionReadyTrigger(poke_interval=0.1))
    assert event["outcome"] == "ready"
    assert len(conn.requests(f"/check-session/{SESSION}")) == 5


def test_a_slow_check_does_not_outlast_the_timeout(conn):
    conn.create_session(SESSION, KEY)  # never linked
    conn.add_fault(f"/check-session/{SESSION}", "delay", seconds=15, times=1)
    started = time.monotonic()
    event = first_event(WhatsInfinitySessionReadyTrigger(poke_interval=0.5, timeout_at=time.time() + 1))
    waited = time.monotonic() - started
    assert event["outcome"] == "timeout"
    # Within one poll (plus start-up slack), not after the 15 s answer or the 30 s request timeout.
    assert waited < 1 + 0.5 + 2, waited


def test_many_triggers_stop_when_cancelled_mid_poll(conn):
    # The triggerer cancels triggers all the time (a task cleared, a triggerer shutting down). A
    # trigger that swallowed its cancellation would poll on forever and hold the triggerer.
    conn.create_session(SESSION, KEY)  # never linked

    async def run() -> list[Any]:
        async def consume() -> None:
            trigger = WhatsInfinitySessionReadyTrigger(poke_interval=0.01, timeout_at=time.time() + 600)
            async for _ in trigger.run():
                return

        tasks = [asyncio.create_task(consume()) for _ in range(150)]
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)

    outcomes = asyncio.run(run())
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
