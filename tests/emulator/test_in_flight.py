"""
Requests still in flight when the world they started in is gone: after a reset, a delete or a replace.

The shared fixture resets the emulator between tests, so a send that test A left waiting on a
delay fault, a typing pause or a media download must never land in test B's outbox.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.common import KEY, PHONE, SESSION
from tests.emulator.slow_media import slow_media_server

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

SEND = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "from the previous test"}


class Background:
    """One request on a thread of its own; ``answer()`` waits for it."""

    def __init__(self, emulator: RunningEmulator, method: str, path: str, body: Any = None) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None

        def call() -> None:
            try:
                with httpx.Client(base_url=emulator.url, headers={"x-api-key": KEY}, timeout=30) as client:
                    self.response = client.request(method, path, json=body)
            except BaseException as error:  # handed to the test thread
                self.error = error

        self.thread = threading.Thread(target=call, daemon=True)
        self.thread.start()

    def answer(self) -> httpx.Response:
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the request never finished"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def wait_until(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def check(emulator: RunningEmulator) -> dict[str, Any]:
    answer = httpx.get(f"{emulator.url}/check-session/{SESSION}", headers={"x-api-key": KEY})
    data: dict[str, Any] = answer.json()["data"]
    return data


def start_next_test(emulator: RunningEmulator) -> None:
    """What the fixture and the next test do: reset, then the same session again, linked."""
    emulator.reset()
    emulator.create_session(SESSION, KEY, link=True)


def test_reset_cuts_off_a_send_delayed_by_a_fault(linked: RunningEmulator):
    linked.add_fault("/send", "delay", seconds=1.0)
    send = Background(linked, "POST", "/send", SEND)
    wait_until(lambda: linked.requests("/send"))  # it arrived and sits in the delay
    start_next_test(linked)
    answer = send.answer()
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert (body["success"], body["error"]) == (False, "Conflict")
    assert "reset while this request was in flight" in body["details"]
    assert linked.outbox() == []
    assert check(linked)["queueSize"] == 0
    assert check(linked)["rateLimitRemaining"] == 10


@pytest.mark.whatsinfinity_emulator(typing_delay=1.0)
def test_reset_cuts_off_a_send_waiting_for_its_typing_delay(linked: RunningEmulator):
    send = Background(linked, "POST", "/send", {**SEND, "typing": True})
    wait_until(lambda: check(linked)["rateLimitRemaining"] == 9)  # accepted, now "typing"
    start_next_test(linked)
    answer = send.answer()
    assert answer.status_code == 404, answer.text
    assert "was not sent" in answer.json()["details"]
    assert linked.outbox() == []


@pytest.mark.whatsinfinity_emulator(fetch_media=True)
def test_reset_cuts_off_a_send_waiting_for_its_media(linked: RunningEmulator):
    with slow_media_server(size=10, interval=0.1) as media:
        send = Background(
            linked, "POST", "/send", {"sessionId": SESSION, "to": PHONE, "type": "document", "url": media.url}
        )
        assert media.requested.wait(10)  # the download is under way
        start_next_test(linked)
        answer = send.answer()
    assert answer.status_code == 404, answer.text
    assert "was not sent" in answer.json()["details"]
    assert linked.outbox() == []


def _delete(emulator: RunningEmulator) -> None:
    answer = httpx.post(
        f"{emulator.url}/delete-session", json={"sessionId": SESSION}, headers={"x-api-key": KEY}
    )
    assert answer.status_code == 200, answer.text


def _replace(emulator: RunningEmulator) -> None:
    _delete(emulator)
    emulator.create_session(SESSION, KEY)


def _reset(emulator: RunningEmulator) -> None:
    emulator.reset()


@pytest.mark.whatsinfinity_emulator(typing_delay=0.8)
@pytest.mark.parametrize("gone", [_delete, _replace, _reset], ids=["delete", "replace", "reset"])
def test_queue_delivery_stops_when_its_session_is_gone(
    whatsinfinity_emulator: RunningEmulator, gone: Callable[[RunningEmulator], None]
):
    emulator = whatsinfinity_emulator
    emulator.create_session(SESSION, KEY)
    with httpx.Client(base_url=emulator.url, headers={"x-api-key": KEY}) as api:
        for number in range(2):
            answer = api.post("/send", json={**SEND, "message": f"queued {number}", "typing": True})
            assert answer.json()["data"]["queued"] is True
    link = Background(emulator, "POST", f"/_emulator/sessions/{SESSION}/link")
    wait_until(lambda: check(emulator)["status"] == "active")  # delivering: "typing" the first message
    gone(emulator)
    link.answer()
    time.sleep(0.9)  # past the next typing pause, had delivery gone on
    assert emulator.outbox() == []
