"""The ``whatsinfinity-emulator`` command line, its state file, auto-linking and media fetching."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_whatsinfinity.emulator.process import EmulatorProcess, emulator_command, free_port
from tests.common import KEY, PHONE, SESSION
from tests.emulator.slow_media import slow_media_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

CONSOLE_SCRIPT = Path(sys.executable).parent / "whatsinfinity-emulator"
MODULE_COMMAND = [sys.executable, "-m", "airflow_provider_whatsinfinity.emulator"]
OPTIONS = [
    "--rate-limit",
    "--rate-window",
    "--queue-max",
    "--qr-ttl",
    "--typing-delay",
    "--auto-link",
    "--fetch-media",
    "--state-file",
]


def run_cli(*args: str, command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or emulator_command()), *args], capture_output=True, text=True, timeout=30, check=False
    )


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/all-sessions", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class CliEmulator(EmulatorProcess):
    """The command line emulator, logging at info level to a file, with a client on the default session."""

    def __init__(self, log_path: Path, *options: str, port: int | None = None) -> None:
        super().__init__("--log-level", "info", *options, port=port, log_path=log_path, start_timeout=20)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-api-key": KEY}, timeout=10)


@contextlib.contextmanager
def emulator_process(tmp_path: Path, *options: str) -> Iterator[CliEmulator]:
    """Run the command line emulator on a free port until it answers; always stop it afterwards."""
    for attempt in range(3):  # another process may take the free port before the emulator binds it
        port = free_port()
        running = CliEmulator(tmp_path / f"emulator-{port}-{attempt}.log", *options, port=port)
        try:
            running.start()
            break
        except RuntimeError as exc:
            running.close()
            if "address already in use" not in running.output().lower():
                pytest.fail(f"{exc}:\n{running.output()}")
    else:
        pytest.fail("no free port for the emulator")
    try:
        yield running
    finally:
        running.stop()
        running.close()


def send_text(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/send", json={"sessionId": SESSION, "to": PHONE, "type": "text", "message": text})


def control(client: httpx.Client, action: str) -> dict[str, Any]:
    answer = client.post(f"/_emulator/sessions/{SESSION}/{action}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def outbox(client: httpx.Client) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.get("/_emulator/outbox").json()["data"]["messages"]
    return messages


def check(client: httpx.Client, key: str = KEY) -> httpx.Response:
    return client.get(f"/check-session/{SESSION}", headers={"x-api-key": key})


# Options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[str(CONSOLE_SCRIPT)], MODULE_COMMAND], ids=["console-script", "module"])
def test_help_lists_every_option(command: list[str]):
    if not Path(command[0]).exists():
        pytest.skip(f"{command[0]} is not installed")
    result = run_cli("--help", command=command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: whatsinfinity-emulator")
    for option in [*OPTIONS, "--host", "--port", "--connect-delay", "--fetch-timeout", "--max-body-bytes"]:
        assert option in result.stdout, option


BAD_OPTIONS = [
    (["--rate-limit", "-1"], "argument --rate-limit: '-1' must not be negative"),
    (["--rate-limit", "ten"], "argument --rate-limit: 'ten' is not"),
    (["--rate-limit", "1.5"], "argument --rate-limit: '1.5' is not"),
    (["--rate-limit", "0"], "rate_limit out of range"),
    (["--rate-window", "0"], "rate_window out of range"),
    (["--rate-window", "nan"], "rate_window out of range"),
    (["--queue-max", "-5"], "argument --queue-max: '-5' must not be negative"),
    (["--qr-ttl", "0"], "qr_ttl out of range"),
    (["--typing-delay", "-0.1"], "argument --typing-delay: '-0.1' must not be negative"),
    (["--auto-link", "soon"], "argument --auto-link: 'soon' is not"),
    (["--max-body-bytes", "100"], "max_body_bytes out of range"),
    (["--fetch-timeout", "0"], "fetch_timeout out of range"),
    (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
    (["--state-file"], "argument --state-file: expected one argument"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
]


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_exits_non_zero_with_message(args: list[str], message: str):
    result = run_cli(*args, "--port", str(free_port()))
    assert result.returncode == 2
    assert "whatsinfinity-emulator: error:" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_port_above_65535_is_refused(tmp_path: Path):
    port = free_port()
    # Its URL points at the port asked for modulo 65536, where the later --port must not make it listen.
    running = CliEmulator(tmp_path / "emulator.log", "--port", str(port + 65536), port=port)
    process = running.launch()
    try:
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            assert not answers(running.url), f"asked for port {port + 65536}, listens on {port}"
            time.sleep(0.05)
        assert process.returncode == 2
        assert "--port" in running.output()
    finally:
        running.stop()
        running.close()


def test_every_option_reaches_the_emulator(tmp_path: Path):
    state = tmp_path / "state.json"
    options = {
        "--rate-limit": ("3", "rate_limit", 3),
        "--rate-window": ("30", "rate_window", 30.0),
        "--queue-max": ("5", "queue_max", 5),
        "--qr-ttl": ("20", "qr_ttl", 20.0),
        "--typing-delay": ("0.25", "typing_delay", 0.25),
        "--connect-delay": ("0.1", "connect_delay", 0.1),
        "--auto-link": ("30", "auto_link", 30.0),
        "--fetch-timeout": ("2", "fetch_timeout", 2.0),
        "--state-file": (str(state), "state_file", str(state)),
        "--max-body-bytes": ("2048", "max_body_bytes", 2048),
    }
    argv = [part for option, (value, _, _) in options.items() for part in (option, value)]
    with emulator_process(tmp_path, *argv, "--fetch-media") as emulator, emulator.client() as client:
        config = client.get("/_emulator/config").json()["data"]
        for _, name, expected in options.values():
            assert config[name] == expected, name
        assert config["fetch_media"] is True
        # Spot checks that the settings are live, not just reported.
        client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY})
        assert check(client).json()["data"]["rateLimitRemaining"] == 3
        too_large = client.post("/send", content=b'{"message": "' + b"x" * 2048 + b'"}')
        assert too_large.status_code == 413


def test_defaults_without_options(tmp_path: Path):
    with emulator_process(tmp_path) as emulator, emulator.client() as client:
        config = client.get("/_emulator/config").json()["data"]
        assert (config["rate_limit"], config["rate_window"], config["queue_max"]) == (10, 60.0, 100)
        assert (config["auto_link"], config["fetch_media"], config["state_file"]) == (None, False, None)


# State file ---------------------------------------------------------------------------------


def test_state_file_keeps_sessions_keys_and_queue_across_restarts(tmp_path: Path):
    state = tmp_path / "state" / "emulator.json"
    options = ("--state-file", str(state), "--typing-delay", "0")
    texts = ["first", "second", "third", "fourth"]
    assert not state.exists()

    with emulator_process(tmp_path, *options) as first, first.client() as client:
        created = client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY})
        assert created.status_code == 200
        assert state.exists()
        assert control(client, "link")["status"] == "active"
        assert control(client, "disconnect")["status"] == "disconnected"
        ids = []
        for text in texts:
            answer = send_text(client, text)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["queued"] is True
            ids.append(answer.json()["data"]["messageId"])
        assert check(client).json()["data"]["queueSize"] == len(texts)
        assert outbox(client) == []
        returncode = first.stop(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal it caught.
        assert returncode in (0, -signal.SIGTERM), first.output()
        assert "Application shutdown complete" in first.output()
    assert json.loads(state.read_text())  # a readable JSON file was left behind

    with emulator_process(tmp_path, *options) as second, second.client() as client:
        data = check(client).json()["data"]
        assert (data["status"], data["queueSize"], data["isReady"]) == ("disconnected", len(texts), False)
        assert check(client, "some-other-key-16+").status_code == 401
        assert outbox(client) == []
        linked = control(client, "link")
        assert (linked["status"], linked["queueSize"]) == ("active", 0)
        delivered = outbox(client)
        assert [(m["message"], m["messageId"], m["queued"]) for m in delivered] == [
            (text, message_id, True) for text, message_id in zip(texts, ids, strict=True)
        ]
        assert all(m["deliveredAt"] for m in delivered)
        assert send_text(client, "after restart").json()["data"]["queued"] is False
        new_key = client.post("/rotate-key", json={"sessionId": SESSION}).json()["data"]["apiKey"]
        # Killed without a chance to clean up: the state file was written on every change.
        second.stop(signal.SIGKILL)

    with emulator_process(tmp_path, *options) as third, third.client() as client:
        assert check(client).status_code == 401
        data = check(client, new_key).json()["data"]
        assert (data["status"], data["queueSize"]) == ("active", 0)
        assert [m["message"] for m in outbox(client)] == [*texts, "after restart"]
        assert len({m["messageId"] for m in outbox(client)}) == len(texts) + 1


CORRUPT_STATES = [
    ("not-json", b"{not json"),
    ("truncated", b'{"version": 1, "sessions": [{"sessionId": "mysession", "apiKey": "your-ses'),
    ("a-list", b"[]"),
    ("missing-sessions", b'{"version": 1, "outbox": [], "unregistered": []}'),
    (
        "session-without-key",
        b'{"version": 1, "sessions": [{"sessionId": "x"}], "outbox": [], "unregistered": []}',
    ),
    ("not-utf8", b"\xff\xfe\x00garbage"),
]


@pytest.mark.parametrize("content", [c for _, c in CORRUPT_STATES], ids=[i for i, _ in CORRUPT_STATES])
def test_corrupt_state_file_exits_with_clear_message(tmp_path: Path, content: bytes):
    state = tmp_path / "state.json"
    state.write_bytes(content)
    result = run_cli("--state-file", str(state), "--port", str(free_port()))
    assert result.returncode == 2
    assert f"whatsinfinity-emulator: Cannot read emulator state file {state}" in result.stderr
    assert "move it away to start empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == content  # left alone for the user to inspect


def test_state_file_that_is_a_directory(tmp_path: Path):
    result = run_cli("--state-file", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 2
    assert "Cannot read emulator state file" in result.stderr
    assert "Traceback" not in result.stderr


# Auto-link ----------------------------------------------------------------------------------


def _wait_for_status(
    client: httpx.Client, session_id: str, key: str, status: str, timeout: float = 10
) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(
            client.get(f"/check-session/{session_id}", headers={"x-api-key": key}).json()["data"]["status"]
        )
        if seen[-1] == status:
            return seen
        time.sleep(0.03)
    pytest.fail(f"{session_id} never became {status}: {seen[-5:]}")


def test_auto_link_makes_new_sessions_active(tmp_path: Path):
    with (
        emulator_process(tmp_path, "--auto-link", "0.3", "--typing-delay", "0") as emulator,
        emulator.client() as client,
    ):
        started = time.monotonic()
        answer = client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY})
        created = answer.json()["data"]
        assert (created["status"], created["hasQR"]) == ("qr", True)
        # Sent while waiting for the link: queued, then delivered by the link.
        assert send_text(client, "early").json()["data"]["queued"] is True
        seen = _wait_for_status(client, SESSION, KEY, "active")
        assert time.monotonic() - started >= 0.3
        assert set(seen) <= {"qr", "active"}
        assert [m["message"] for m in outbox(client)] == ["early"]
        assert send_text(client, "late").json()["data"]["queued"] is False

        # Linking by pairing code is auto-linked the same way.
        other_key = "another-key-of-16+chars"
        client.post("/create-session", json={"sessionId": "paired", "apiKey": other_key})
        pairing = client.post(
            "/pairing-code",
            json={"sessionId": "paired", "phoneNumber": PHONE},
            headers={"x-api-key": other_key},
        )
        assert pairing.json()["data"]["status"] == "pairing"
        assert set(_wait_for_status(client, "paired", other_key, "active")) <= {"qr", "pairing", "active"}


def test_without_auto_link_sessions_wait_for_a_scan(tmp_path: Path):
    with emulator_process(tmp_path) as emulator, emulator.client() as client:
        client.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY})
        time.sleep(0.5)
        assert check(client).json()["data"]["status"] == "qr"


# Fetching media -----------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny HTTP server on loopback serving the files of a folder; yields its URL and the folder."""
    folder = tmp_path / "media"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _document(url: str, **extra: Any) -> dict[str, Any]:
    return {"sessionId": SESSION, "to": PHONE, "type": "document", "url": url, **extra}


@pytest.mark.whatsinfinity_emulator(fetch_media=True)
def test_fetch_media_records_size_and_sha256(
    linked: RunningEmulator, api: httpx.Client, media_server: tuple[str, Path]
):
    base, folder = media_server
    content = bytes(range(256)) * 1000 + b"tail"
    (folder / "report.pdf").write_bytes(content)
    answer = api.post("/send", json=_document(f"{base}/report.pdf", caption="April"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["queued"] is False
    [sent] = linked.outbox()
    assert sent["size"] == len(content)
    assert sent["sha256"] == hashlib.sha256(content).hexdigest()
    assert (sent["fileName"], sent["mimetype"], sent["caption"]) == ("report.pdf", "application/pdf", "April")


@pytest.mark.whatsinfinity_emulator(fetch_media=True)
def test_fetch_media_empty_file(linked: RunningEmulator, api: httpx.Client, media_server: tuple[str, Path]):
    base, folder = media_server
    (folder / "empty.txt").write_bytes(b"")
    assert api.post("/send", json=_document(f"{base}/empty.txt")).status_code == 200
    [sent] = linked.outbox()
    assert (sent["size"], sent["sha256"]) == (0, hashlib.sha256(b"").hexdigest())


@pytest.mark.whatsinfinity_emulator(fetch_media=True)
@pytest.mark.parametrize("where", ["missing-file", "nothing-listening"])
def test_fetch_media_failure_is_400_and_nothing_is_sent_or_queued(
    linked: RunningEmulator, api: httpx.Client, media_server: tuple[str, Path], where: str
):
    base, folder = media_server
    if where == "missing-file":
        url, hint = f"{base}/missing.pdf", "HTTP 404"
    else:
        url, hint = f"http://127.0.0.1:{free_port()}/report.pdf", "Could not fetch media"

    def refused() -> None:
        answer = api.post("/send", json=_document(url))
        assert answer.status_code == 400
        body = answer.json()
        assert set(body) == {"success", "requestId", "error", "details"}
        assert body["error"] == "Bad Request"
        assert hint in body["details"]
        assert url in body["details"]

    refused()
    assert linked.outbox() == []
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert (data["queueSize"], data["rateLimitRemaining"]) == (0, 10)

    # While disconnected the download is still tried before the message would be queued.
    linked.disconnect(SESSION)
    refused()
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 0
    (folder / "ok.pdf").write_bytes(b"%PDF-1.4 ok")
    queued = api.post("/send", json=_document(f"{base}/ok.pdf"))
    assert queued.json()["data"]["queued"] is True
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 1
    linked.link(SESSION)
    [sent] = linked.outbox()
    assert (sent["url"], sent["size"]) == (f"{base}/ok.pdf", len(b"%PDF-1.4 ok"))
    assert sent["sha256"] == hashlib.sha256(b"%PDF-1.4 ok").hexdigest()


@pytest.mark.whatsinfinity_emulator(fetch_media=True, fetch_max_bytes=1000)
def test_fetch_media_too_large(linked: RunningEmulator, api: httpx.Client, media_server: tuple[str, Path]):
    base, folder = media_server
    (folder / "big.pdf").write_bytes(b"x" * 5000)
    answer = api.post("/send", json=_document(f"{base}/big.pdf"))
    assert answer.status_code == 400
    assert "larger than 1000 bytes" in answer.json()["details"]
    assert linked.outbox() == []


def test_without_fetch_media_urls_are_not_downloaded(linked: RunningEmulator, api: httpx.Client):
    url = f"http://127.0.0.1:{free_port()}/report.pdf"
    assert api.post("/send", json=_document(url)).status_code == 200
    [sent] = linked.outbox()
    assert "size" not in sent
    assert "sha256" not in sent


@pytest.mark.whatsinfinity_emulator(fetch_media=True, fetch_timeout=0.5)
def test_fetch_timeout_bounds_the_whole_download(linked: RunningEmulator, api: httpx.Client):
    # Each byte comes well within the timeout; the whole file (20 bytes, 0.1 s apart) does not.
    with slow_media_server(size=20, interval=0.1) as media:
        started = time.monotonic()
        answer = api.post("/send", json=_document(media.url))
        took = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"success", "requestId", "error", "details"}
    assert "download took longer than the 0.5 s fetch timeout" in body["details"]
    assert media.url in body["details"]
    assert took < 1.5
    assert linked.outbox() == []
    assert api.get(f"/check-session/{SESSION}").json()["data"]["rateLimitRemaining"] == 10
