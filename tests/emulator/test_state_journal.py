"""
``--state-file`` under stress: a kill in the middle of traffic, a torn journal line, many stored messages.

A send costs the same whether 10 or 10,000 messages are stored: each change is appended to a journal
beside the state file, and the snapshot is rewritten only now and then.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_whatsinfinity.emulator import run_emulator
from airflow_provider_whatsinfinity.emulator.process import free_port
from tests.common import KEY, PHONE, SESSION
from tests.emulator.test_cli_and_state import check, control, emulator_process, outbox, run_cli, send_text

if TYPE_CHECKING:
    from tests.emulator.test_cli_and_state import CliEmulator

OPTIONS = ("--typing-delay", "0", "--rate-limit", "100000")


def hidden_leftovers(state: Path) -> list[str]:
    """Temp files of an interrupted snapshot write: ``.<state file name>.<random>``."""
    return sorted(p.name for p in state.parent.iterdir() if p.name.startswith(f".{state.name}."))


def io_written(emulator: CliEmulator) -> int:
    """Bytes the emulator process has written so far, to files and sockets alike."""
    for line in Path(f"/proc/{emulator.pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/<pid>/io")


def test_kill_mid_traffic_loses_no_accepted_message_and_leaves_no_temp_files(tmp_path: Path):
    state = tmp_path / "state" / "emulator.json"
    options = ("--state-file", str(state), *OPTIONS)
    accepted: list[tuple[str, str]] = []
    refused: list[str] = []
    stop = threading.Event()

    with emulator_process(tmp_path, *options) as first, first.client() as client:
        assert client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY}).status_code == 200
        control(client, "link")

        def send_until_killed() -> None:
            with first.client() as sender:
                for number in range(100_000):
                    if stop.is_set():
                        return
                    text = f"message {number:05d}"
                    try:
                        answer = send_text(sender, text)
                    except httpx.TransportError:
                        return  # killed: this last one may or may not have been stored
                    if answer.status_code != 200:
                        refused.append(answer.text)
                        return
                    accepted.append((text, answer.json()["data"]["messageId"]))

        thread = threading.Thread(target=send_until_killed, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while len(accepted) < 80 and time.monotonic() < deadline:
            time.sleep(0.01)
            if len(accepted) >= 40 and check(client).json()["data"]["status"] == "active":
                control(client, "disconnect")  # from here on the sends are queued
        first.stop(signal.SIGKILL)
        thread.join(timeout=20)
        stop.set()
    assert refused == []
    assert len(accepted) >= 80
    # As if the kill had come in the middle of writing a snapshot.
    (state.parent / f".{state.name}.k1ll3d_x").write_text('{"version": 1, "sessi')
    (state.parent / f".{state.name}.abcd_123.tmp").write_text("")

    with emulator_process(tmp_path, *options) as second, second.client() as client:
        assert hidden_leftovers(state) == []
        assert check(client).json()["data"]["status"] == "disconnected"
        control(client, "link")
        delivered = [(m["message"], m["messageId"]) for m in outbox(client)]
        assert set(accepted) <= set(delivered), "an accepted message was lost"
        assert len(delivered) == len(set(delivered)), "a message was stored twice"
        assert [text for text, _ in delivered] == sorted(text for text, _ in delivered)
        assert len(delivered) <= len(accepted) + 1  # at most the one whose answer the kill cut off
    assert hidden_leftovers(state) == []


def test_torn_last_journal_line_is_ignored_with_a_log_line(tmp_path: Path):
    state = tmp_path / "emulator.json"
    options = ("--state-file", str(state), *OPTIONS)
    with emulator_process(tmp_path, *options) as first, first.client() as client:
        client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY})
        ids = [send_text(client, f"queued {n}").json()["data"]["messageId"] for n in range(3)]
        first.stop(signal.SIGKILL)
    journal = state.with_name(state.name + ".journal")
    assert journal.exists()
    with journal.open("a") as fh:
        fh.write('{"seq": 999, "op": "queued", "message": {"message_id": "3EB0TORN')  # cut off mid-write

    with emulator_process(tmp_path, *options) as second, second.client() as client:
        assert "torn" in second.output()
        assert str(journal) in second.output()
        assert check(client).json()["data"]["queueSize"] == 3
        control(client, "link")
        assert [m["messageId"] for m in outbox(client)] == ids
        # Start-up folded the journal into the snapshot: the torn line is gone for good.
        assert "3EB0TORN" not in journal.read_text()


def test_corrupt_journal_line_before_the_end_exits_with_clear_message(tmp_path: Path):
    state = tmp_path / "emulator.json"
    with emulator_process(tmp_path, "--state-file", str(state), *OPTIONS) as first, first.client() as client:
        client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY})
        first.stop(signal.SIGKILL)
    journal = state.with_name(state.name + ".journal")
    journal.write_text("not json\n" + journal.read_text())
    before = journal.read_bytes()
    result = run_cli("--state-file", str(state), "--port", str(free_port()))
    assert result.returncode == 2
    assert f"Cannot read emulator state journal {journal}" in result.stderr
    assert "line 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert journal.read_bytes() == before


def _stored_outbox(count: int) -> dict[str, Any]:
    """A state file as an older emulator wrote it, with ``count`` delivered messages."""
    message = {
        "session_id": SESSION,
        "to": PHONE,
        "type": "text",
        "message": "stored earlier " + "x" * 200,
        "url": None,
        "caption": None,
        "file_name": None,
        "mimetype": None,
        "typing": False,
        "queued": False,
        "accepted_at": "2026-01-01T00:00:00.000Z",
        "delivered_at": "2026-01-01T00:00:00.000Z",
        "size": None,
        "sha256": None,
    }
    session = {
        "sessionId": SESSION,
        "apiKey": KEY,
        "status": "active",
        "linked": True,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastActiveAt": None,
        "warning": None,
        "queue": [],
    }
    outbox = [{**message, "message_id": f"3EB0{n:018d}"} for n in range(count)]
    return {"version": 1, "sessions": [session], "outbox": outbox, "unregistered": []}


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/<pid>/io")
def test_a_send_writes_the_same_few_bytes_with_thousands_of_messages_stored(tmp_path: Path):
    state = tmp_path / "emulator.json"
    state.write_text(json.dumps(_stored_outbox(3000)))  # about 1 MB
    with emulator_process(tmp_path, "--state-file", str(state), *OPTIONS) as emulator:
        with emulator.client() as client:
            assert send_text(client, "warm up").status_code == 200
            before = io_written(emulator)
            for number in range(20):
                assert send_text(client, f"new {number}").status_code == 200
            per_send = (io_written(emulator) - before) / 20
        assert per_send < 20_000, f"{per_send:.0f} bytes written per send"
        emulator.stop(signal.SIGKILL)
    with emulator_process(tmp_path, "--state-file", str(state), *OPTIONS) as again, again.client() as client:
        assert len(outbox(client)) == 3000 + 21


def test_many_compactions_keep_every_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow_provider_whatsinfinity.emulator import persistence

    # Fold the journal into the snapshot every few changes, so that many snapshots are written.
    monkeypatch.setattr(persistence, "COMPACT_MIN_RECORDS", 3)
    state = tmp_path / "first" / "emulator.json"
    settings: dict[str, Any] = {"typing_delay": 0.0, "rate_limit": 1000}
    with run_emulator(state_file=state, **settings) as first:
        first.create_session(SESSION, KEY, link=True)
        with httpx.Client(base_url=first.url, headers={"x-api-key": KEY}) as client:
            for number in range(25):
                if number == 10:
                    first.disconnect(SESSION)
                if number == 20:
                    first.link(SESSION)
                assert send_text(client, f"message {number:02d}").status_code == 200
            first.disconnect(SESSION)
            for number in range(25, 30):
                assert send_text(client, f"message {number:02d}").status_code == 200
        # What is on disk now is what a kill would leave: start a second emulator on a copy of it.
        shutil.copytree(state.parent, tmp_path / "second")
        expected = first.outbox()
    assert [m["message"] for m in expected] == [f"message {n:02d}" for n in range(25)]
    with run_emulator(state_file=tmp_path / "second" / "emulator.json", **settings) as second:
        assert second.outbox() == expected
        second.link(SESSION)
        assert [m["message"] for m in second.outbox()] == [f"message {n:02d}" for n in range(30)]
