"""The emulator restarts in the middle of a run with --state-file: no queued message is lost."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from airflow_provider_whatsinfinity.client import RetrySettings, WhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, ServiceUnreachableError
from tests.common import KEY, PHONE, SESSION

MESSAGES = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(port: int, state_file) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "airflow_provider_whatsinfinity.emulator", "--port", str(port)]
    command += ["--state-file", str(state_file), "--log-level", "warning", "--typing-delay", "0"]
    command += ["--rate-limit", "100000"]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/all-sessions", timeout=1)
            return process
        except httpx.TransportError:
            assert process.poll() is None, "the emulator exited"
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.05)


def test_restart_mid_run_loses_no_queued_message(tmp_path):
    port, state = free_port(), tmp_path / "state.json"
    url = f"http://127.0.0.1:{port}"
    emulator = start(port, state)
    try:
        httpx.post(f"{url}/create-session", json={"sessionId": SESSION, "apiKey": KEY}).raise_for_status()
        # Not linked: every send is queued, and lives only in the emulator's state until delivery.
        retry = RetrySettings(max_attempts=3, backoff_base=0.05, backoff_max=0.1)
        client = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url, retry=retry)
        accepted: list[tuple[str, str]] = []
        unknown: list[str] = []
        refused: list[str] = []
        halfway, stopped = threading.Event(), threading.Event()

        def send_all() -> None:
            for number in range(MESSAGES):
                text = f"queued #{number:02d}"
                while True:
                    try:
                        result = client.send_text(PHONE, text)
                    except ServiceUnreachableError:
                        refused.append(text)  # never reached the server: safe to send again
                        time.sleep(0.05)
                        continue
                    except OutcomeUnknownError:
                        unknown.append(text)
                    else:
                        assert result.queued
                        accepted.append((text, str(result.message_id)))
                    break
                if number == MESSAGES // 2:
                    halfway.set()
                    stopped.wait(30)  # carry on only once the emulator is down, so the run spans the restart

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        assert halfway.wait(30)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=20)
        stopped.set()
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            time.sleep(0.02)  # the sender is knocking on a closed port
        emulator = start(port, state)
        sender.join(timeout=60)
        assert not sender.is_alive()

        check = httpx.get(f"{url}/check-session/{SESSION}", headers={"x-api-key": KEY}).json()["data"]
        assert check["queueSize"] >= len(accepted)
        httpx.post(f"{url}/_emulator/sessions/{SESSION}/link").raise_for_status()
        outbox = httpx.get(f"{url}/_emulator/outbox").json()["data"]["messages"]
        delivered = [(m["message"], m["messageId"]) for m in outbox]
        texts = [text for text, _ in delivered]
        assert len(texts) == len(set(texts)), "a message was delivered twice"
        assert set(accepted) <= set(delivered), "an accepted message was lost in the restart"
        assert set(texts) <= {t for t, _ in accepted} | set(unknown)
        assert len(accepted) + len(unknown) == MESSAGES
        assert texts == sorted(texts)  # delivered in the order they were queued
        assert refused, "the run did overlap the restart"
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
