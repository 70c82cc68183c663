"""The session event trigger: what is a change (table-driven), and its run() against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
from airflow_provider_whatsinfinity.triggers.whatsinfinity import (
    SessionChangeDetector,
    SessionHealth,
    WhatsInfinitySessionEventTrigger,
    session_change_reasons,
)
from tests.common import KEY, PHONE, SESSION, connection_json

if TYPE_CHECKING:
    from collections.abc import Callable

READY = SessionHealth("active", is_ready=True, queue_size=0)
AUTH = {"type": "AuthenticationError", "message": "Invalid API key", "status_code": 401}
GONE = {"type": "SessionNotFoundError", "message": "Session not found", "status_code": 404}


def health(status: str = "active", **fields: Any) -> SessionHealth:
    return SessionHealth(status, is_ready=fields.pop("is_ready", status == "active"), **fields)


@pytest.mark.parametrize(
    ("old", "new", "threshold", "reasons"),
    [
        # The first check is a baseline, whatever it shows.
        (None, health("disconnected", warning="x", queue_size=99), 10, []),
        # A state that persists is no news.
        (READY, READY, 10, []),
        (health("disconnected"), health("disconnected"), None, []),
        (health("error", error=AUTH), health("error", error=AUTH), None, []),
        (health(warning="elsewhere"), health(warning="elsewhere"), None, []),
        (health(queue_size=12), health(queue_size=15), 10, []),
        # Away from ready, and back.
        (READY, health("disconnected"), None, ["status"]),
        (READY, health("qr"), None, ["status"]),
        (READY, health("disabled"), None, ["status"]),
        (health("qr"), READY, None, ["status"]),
        (health("disconnected"), READY, None, ["status"]),
        (health("disconnected"), health("disabled"), None, ["status"]),
        (health("disabled"), health("qr"), None, ["status"]),
        # Moves on the way back to ready are one outage, not news.
        (health("disconnected"), health("connecting"), None, []),
        (health("connecting"), health("qr"), None, []),
        (health("qr"), health("pairing"), None, []),
        (health("qr"), health("disconnected"), None, []),
        # Readiness flipping under one status.
        (health("active", is_ready=True), health("active", is_ready=False), None, ["ready"]),
        # Warnings: appearing and changing are news, clearing is not.
        (READY, health(warning="active elsewhere"), None, ["warning"]),
        (health(warning="a"), health(warning="b"), None, ["warning"]),
        (health(warning="a"), READY, None, []),
        # The queue reaching the threshold from below; no threshold, no queue events.
        (health(queue_size=9), health(queue_size=10), 10, ["queue_size"]),
        (health(queue_size=None), health(queue_size=10), 10, ["queue_size"]),
        (health(queue_size=10), health(queue_size=3), 10, []),
        (health(queue_size=3), health(queue_size=500), None, []),
        # Permanent refusals are a state of their own.
        (READY, health("error", error=AUTH), None, ["status", "error"]),
        (health("error", error=AUTH), health("error", error=GONE), None, ["error"]),
        (health("error", error=AUTH), READY, None, ["status"]),
        # Several at once.
        (READY, health("disconnected", warning="w", queue_size=20), 10, ["status", "warning", "queue_size"]),
    ],
)
def test_change_reasons(old, new, threshold, reasons):
    assert session_change_reasons(old, new, threshold) == reasons


def test_the_detector_fires_once_per_change_and_measures_from_the_last_health():
    detector = SessionChangeDetector(queue_size_threshold=5)
    sequence = [
        (READY, None),  # baseline
        (READY, None),
        (health("disconnected"), ["status"]),
        (health("disconnected"), None),
        (health("connecting"), None),
        (health("qr"), None),  # remembered, so that ready is measured from qr
        (READY, ["status"]),
        (health(queue_size=7), ["queue_size"]),
        (health(queue_size=8), None),
    ]
    for new, expected in sequence:
        event = detector.observe(new)
        if expected is None:
            assert event is None, new
        else:
            assert event is not None, new
            assert event["reasons"] == expected
            assert event["new"] == new.to_dict()
            assert json.loads(json.dumps(event)) == event
    assert detector.last == health(queue_size=8)


def test_serialize_round_trip():
    trigger = WhatsInfinitySessionEventTrigger(
        whatsinfinity_conn_id="my_conn", poll_interval=15, queue_size_threshold=25
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == (
        "airflow_provider_whatsinfinity.triggers.whatsinfinity.WhatsInfinitySessionEventTrigger"
    )
    assert kwargs == {"whatsinfinity_conn_id": "my_conn", "poll_interval": 15.0, "queue_size_threshold": 25}
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    # AssetWatcher deduplicates triggers by this hash: a rebuilt trigger is the same trigger.
    assert rebuilt.hash(*rebuilt.serialize()) == trigger.hash(*trigger.serialize())
    assert WhatsInfinitySessionEventTrigger().serialize()[1]["queue_size_threshold"] is None


def test_it_is_an_asset_watcher_trigger():
    from airflow.sdk import Asset, AssetWatcher

    trigger = WhatsInfinitySessionEventTrigger(poll_interval=30)
    asset = Asset("whatsinfinity://session/health", watchers=[AssetWatcher(name="health", trigger=trigger)])
    assert asset.watchers[0].trigger is trigger


# --- run() against the emulator ------------------------------------------------------------------


class Watch:
    """A trigger running in the test's event loop; its events collected as they come."""

    def __init__(self, emulator: Any, **kwargs: Any) -> None:
        self.emulator = emulator
        self.trigger = WhatsInfinitySessionEventTrigger(poll_interval=0.05, **kwargs)
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        async def consume() -> None:
            async for event in self.trigger.run():
                assert json.loads(json.dumps(event.payload)) == event.payload  # plain JSON
                self.events.append(event.payload)

        self.task = asyncio.create_task(consume())
        await self.checks(1)  # the baseline
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def checked(self) -> int:
        return len(self.emulator.requests(f"/check-session/{SESSION}"))

    async def checks(self, count: int, timeout: float = 10) -> None:
        """Wait until the trigger has checked the session ``count`` more times."""
        target = await asyncio.to_thread(self.checked) + count
        await until(lambda: self.checked() >= target, timeout)

    async def events_count(self, count: int, timeout: float = 10) -> None:
        await until(lambda: len(self.events) >= count, timeout)
        await self.checks(5)  # and no more while the state holds
        assert len(self.events) == count, self.events

    async def control(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(action, *args, **kwargs)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
def conn(whatsinfinity_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    return whatsinfinity_emulator


def test_one_event_per_change_none_while_a_state_holds(conn):
    conn.create_session(SESSION, KEY, link=True)

    async def scenario() -> list[dict[str, Any]]:
        async with Watch(conn) as watch:
            await watch.events_count(0)  # a ready session that stays ready: the baseline only
            await watch.control(conn.disconnect, SESSION)
            await watch.events_count(1)
            await watch.control(conn.set_warning, SESSION, "Number active on another device")
            await watch.events_count(2)
            await watch.control(conn.link, SESSION)
            await watch.events_count(3)
            return watch.events

    events = asyncio.run(scenario())
    assert [e["reasons"] for e in events] == [["status"], ["warning"], ["status"]]
    assert (events[0]["old"]["status"], events[0]["new"]["status"]) == ("active", "disconnected")
    assert (events[0]["old"]["is_ready"], events[0]["new"]["is_ready"]) == (True, False)
    assert events[1]["new"]["warning"] == "Number active on another device"
    assert events[2]["new"]["status"] == "active"
    assert KEY not in json.dumps(events)


def test_the_queue_crossing_its_threshold(conn):
    conn.create_session(SESSION, KEY, link=True)
    conn.disconnect(SESSION)
    hook = WhatsInfinityHook()

    async def scenario() -> list[dict[str, Any]]:
        async with Watch(conn, queue_size_threshold=3) as watch:
            for _ in range(2):
                await watch.control(hook.send_text, PHONE, "queued")
            await watch.events_count(0)
            await watch.control(hook.send_text, PHONE, "queued")
            await watch.events_count(1)
            await watch.control(hook.send_text, PHONE, "queued")  # still over: no news
            await watch.events_count(1)
            return watch.events

    try:
        events = asyncio.run(scenario())
    finally:
        hook.close()
    [event] = events
    assert event["reasons"] == ["queue_size"]
    assert (event["old"]["queue_size"], event["new"]["queue_size"]) == (2, 3)


def test_transient_errors_are_not_changes_permanent_ones_are(conn):
    conn.create_session(SESSION, KEY, link=True)

    async def scenario() -> list[dict[str, Any]]:
        async with Watch(conn) as watch:
            await watch.control(conn.add_fault, "/check-session", "status", status=502, times=8)
            await watch.checks(8 + 2, timeout=30)  # the 502s, then answers again
            await watch.events_count(0)
            hook = WhatsInfinityHook()
            await watch.control(hook.delete_session)
            hook.close()
            await watch.events_count(1)
            return watch.events

    [event] = asyncio.run(scenario())
    assert event["reasons"] == ["status", "error"]
    assert event["old"]["status"] == "active"
    assert (event["new"]["status"], event["new"]["error"]["type"]) == ("error", "SessionNotFoundError")
    assert event["new"]["error"]["request_id"]


def test_a_restarted_trigger_starts_from_a_fresh_baseline(conn):
    conn.create_session(SESSION, KEY, link=True)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with Watch(conn) as first:
            await first.control(conn.disconnect, SESSION)
            await first.events_count(1)
        classpath, kwargs = first.trigger.serialize()
        assert classpath.endswith(".WhatsInfinitySessionEventTrigger")
        async with Watch(conn, **{k: v for k, v in kwargs.items() if k != "poll_interval"}) as second:
            await second.events_count(0)  # disconnected is its baseline, not news
            await second.control(conn.link, SESSION)
            await second.events_count(1)
        return first.events, second.events

    first, second = asyncio.run(scenario())
    assert first[0]["new"]["status"] == "disconnected"
    assert (second[0]["old"]["status"], second[0]["new"]["status"]) == ("disconnected", "active")


def test_cancelled_mid_check_it_stops_and_closes_its_client(conn):
    conn.create_session(SESSION, KEY, link=True)
    conn.add_fault(f"/check-session/{SESSION}", "delay", seconds=15, times=1)
    closed: list[bool] = []
    original = WhatsInfinityHook.aclose

    async def counting_aclose(self: WhatsInfinityHook) -> None:
        closed.append(True)
        await original(self)

    async def scenario() -> float:
        trigger = WhatsInfinitySessionEventTrigger(poll_interval=0.05)

        async def consume() -> None:
            async for _ in trigger.run():
                pass

        task = asyncio.create_task(consume())
        await until(lambda: len(conn.requests(f"/check-session/{SESSION}")) >= 1, 10)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    mp = pytest.MonkeyPatch()
    mp.setattr(WhatsInfinityHook, "aclose", counting_aclose)
    try:
        waited = asyncio.run(scenario())
    finally:
        mp.undo()
    assert waited < 2, waited  # not after the 15 s answer
    assert closed


def test_a_restart_after_an_outage_is_one_event_back_to_ready(conn):
    conn.create_session(SESSION, KEY, link=True)
    hook = WhatsInfinityHook()

    async def scenario() -> list[dict[str, Any]]:
        async with Watch(conn) as watch:
            await watch.control(conn.disconnect, SESSION)
            await watch.events_count(1)
            await watch.control(hook.restart_session)  # connecting, then ready again: not news
            await watch.events_count(2)
            return watch.events

    try:
        events = asyncio.run(scenario())
    finally:
        hook.close()
    back = events[1]
    assert (events[0]["old"]["status"], events[0]["new"]["status"]) == ("active", "disconnected")
    # Measured from the last check: disconnected, or connecting when a check fell in the restart.
    assert back["old"]["status"] in {"disconnected", "connecting"}
    assert (back["reasons"], back["new"]["status"], back["new"]["is_ready"]) == (["status"], "active", True)
