"""The API doc's own examples, base URL swapped and nothing else, run against the emulator."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.common import KEY, PHONE, SESSION, decode_qr
from tests.emulator.doc_snippets import (
    Snippet,
    curl_argv,
    doc_json,
    javascript_source,
    python_source,
    snippets,
    with_base_url,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

CHECK_SESSION_FIELDS = {"status", "isReady", "hasQR", "queueSize", "rateLimitRemaining", "lastActiveAt"}


def run_snippet(snippet: Snippet, base_url: str, cwd: Path) -> Any:
    """Run an example; return its JSON output (cURL, Python) or its printed text (JavaScript)."""
    code = with_base_url(snippet.code, base_url)
    if snippet.language == "curl":
        out = subprocess.run(curl_argv(code), cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout) if out.stdout else None
    if snippet.language == "python":
        cmd = [sys.executable, "-c", python_source(code)]
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
        return ast.literal_eval(out.stdout.strip())
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    cmd = [node, "--input-type=module", "-e", javascript_source(code)]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def check_session(emulator: RunningEmulator, key: str = KEY) -> httpx.Response:
    return httpx.get(f"{emulator.url}/check-session/{SESSION}", headers={"x-api-key": key})


def assert_success(output: Any) -> dict[str, Any]:
    """A JSON answer in the documented success shape; returns its data."""
    if isinstance(output, str):  # JavaScript prints objects with util.inspect, or nothing at all
        assert not output or "success: true" in output, output
        return {}
    assert set(output) == {"success", "requestId", "data"}
    assert output["success"] is True
    assert len(output["requestId"]) == 36
    data: dict[str, Any] = output["data"]
    return data


# Each section: what the emulator needs before the example runs, and what must hold after it.
@dataclass
class Scenario:
    setup: Callable[[RunningEmulator], None]
    verify: Callable[[RunningEmulator, Any, Path], None]


def _create(emulator: RunningEmulator) -> None:
    emulator.create_session(SESSION, KEY)


def _create_linked(emulator: RunningEmulator) -> None:
    emulator.create_session(SESSION, KEY, link=True)


def _verify_check(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    if isinstance(output, str):
        assert not output or "isReady" in output
        return
    assert set(data) == CHECK_SESSION_FIELDS
    assert data["status"] == "qr"
    assert data["isReady"] is False
    assert data["hasQR"] is True
    assert data["queueSize"] == 0
    assert data["rateLimitRemaining"] == 10


def _verify_create(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    if data:
        assert data["sessionId"] == SESSION
        assert data["status"] == "qr"
    body = check_session(emulator).json()
    assert body["data"]["status"] == "qr"


def _verify_qr(emulator: RunningEmulator, output: Any, cwd: Path) -> None:

    png = (cwd / "qr.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_qr(png).startswith("2@")


def _verify_pairing(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    if data:
        assert len(data["pairingCode"]) == 8
    assert check_session(emulator).json()["data"]["status"] == "pairing"


def _verify_check_linked(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    if isinstance(output, str):
        assert "isReady: true" in output
        return
    assert set(data) == CHECK_SESSION_FIELDS
    assert data["status"] == "active"
    assert data["isReady"] is True
    assert data["lastActiveAt"].endswith("Z")


def _create_two(emulator: RunningEmulator) -> None:
    emulator.create_session(SESSION, KEY, link=True)
    emulator.create_session("other-session", "another-key-of-16+chars")


def _verify_all(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    by_id = {s["sessionId"]: s for s in data["sessions"]}
    assert by_id[SESSION]["status"] == "active"
    assert by_id["other-session"]["status"] == "qr"
    text = json.dumps(output)
    assert KEY not in text
    assert "another-key-of-16+chars" not in text
    assert "apiKey" not in text


def _verify_restart(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    if output and not isinstance(output, str):
        assert assert_success(output)["status"] == "connecting"
    statuses = [check_session(emulator).json()["data"]["status"]]
    deadline = time.monotonic() + 10
    while statuses[-1] != "active" and time.monotonic() < deadline:
        time.sleep(0.05)
        statuses.append(check_session(emulator).json()["data"]["status"])
    assert statuses[-1] == "active"
    assert set(statuses) <= {"connecting", "active"}


def _verify_delete(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    assert assert_success(output)["deleted"] is True
    answer = check_session(emulator)
    assert answer.status_code == 404
    assert answer.json()["error"] == "Not Found"


def _create_with_current_key(emulator: RunningEmulator) -> None:
    emulator.create_session(SESSION, "your-current-api-key", link=True)


def _verify_rotate(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    if isinstance(output, str):
        assert output.startswith("New apiKey: ")
        new_key = output.removeprefix("New apiKey: ").strip()
    else:
        new_key = assert_success(output)["apiKey"]
    assert len(new_key) >= 16
    assert check_session(emulator, "your-current-api-key").status_code == 401
    assert check_session(emulator, new_key).json()["data"]["status"] == "active"


def _verify_text(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    outbox = emulator.outbox()
    assert [(m["to"], m["type"], m["message"]) for m in outbox] == [(PHONE, "text", "Hello from my app!")]
    if data:
        assert data == {"queued": False, "messageId": outbox[0]["messageId"]}


def _verify_media(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    data = assert_success(output)
    [sent] = emulator.outbox()
    expected = {
        "https://files.example.com/invoice.pdf": ("document", "invoice.pdf", "April invoice"),
        "https://files.example.com/photo.jpg": ("image", None, "Here you go"),
        "https://files.example.com/voice.mp3": ("audio", None, None),
    }
    assert (sent["type"], sent["fileName"], sent["caption"]) == expected[sent["url"]]
    if data:
        assert data == {"queued": False, "messageId": sent["messageId"]}


def _verify_dry_run(emulator: RunningEmulator, output: Any, cwd: Path) -> None:
    assert "dryRun: true" in output
    assert "919999999999@s.whatsapp.net" in output
    assert emulator.outbox() == []


SCENARIOS = {
    "Example header": Scenario(_create, _verify_check),
    "Create Session": Scenario(lambda e: None, _verify_create),
    "Get QR Code": Scenario(_create, _verify_qr),
    "Pairing Code": Scenario(_create, _verify_pairing),
    "Check Session": Scenario(_create_linked, _verify_check_linked),
    "All Sessions": Scenario(_create_two, _verify_all),
    "Restart Session": Scenario(_create_linked, _verify_restart),
    "Delete Session": Scenario(_create, _verify_delete),
    "Rotate API Key": Scenario(_create_with_current_key, _verify_rotate),
    "Send Text Message": Scenario(_create_linked, _verify_text),
    "Send Media (Image / Video / PDF / Audio)": Scenario(_create_linked, _verify_media),
    "Dry Run Mode": Scenario(_create_linked, _verify_dry_run),
}

RUNNABLE = [
    s for s in snippets() if s.language in ("curl", "python", "javascript") and s.section in SCENARIOS
]


def test_every_runnable_example_has_a_scenario():
    runnable = [s for s in snippets() if s.language in ("curl", "python", "javascript")]
    # The full working example needs an auto-linking emulator and has a test of its own below.
    assert {s.section for s in runnable} - set(SCENARIOS) == {"Full working example (JavaScript)"}
    assert len([s for s in RUNNABLE if s.language == "curl"]) == 11
    assert len([s for s in RUNNABLE if s.language == "python"]) == 6


@pytest.mark.parametrize("snippet", RUNNABLE, ids=lambda s: s.id)
def test_doc_example(snippet: Snippet, whatsinfinity_emulator: RunningEmulator, tmp_path: Path):
    scenario = SCENARIOS[snippet.section]
    scenario.setup(whatsinfinity_emulator)
    before = len(whatsinfinity_emulator.requests())
    output = run_snippet(snippet, whatsinfinity_emulator.url, tmp_path)
    made = whatsinfinity_emulator.requests()[before:]
    assert made, "the example reached the emulator"
    assert all(200 <= r["status"] < 300 for r in made), made
    scenario.verify(whatsinfinity_emulator, output, tmp_path)


@pytest.mark.whatsinfinity_emulator(auto_link=0.5, typing_delay=0.2)
def test_full_working_example(whatsinfinity_emulator: RunningEmulator, tmp_path: Path):
    [snippet] = [s for s in snippets("javascript") if s.section == "Full working example (JavaScript)"]
    output = run_snippet(snippet, whatsinfinity_emulator.url, tmp_path)
    assert "Ready:" in output
    assert "isReady: true" in output
    [sent] = whatsinfinity_emulator.outbox()
    assert (sent["to"], sent["message"]) == (PHONE, "Hello from my integration!")


@pytest.mark.skipif(
    shutil.which("php") is None and not os.environ.get("CI"),
    reason="php is not installed (make tools installs it); its examples are not run",
)
@pytest.mark.parametrize(
    "snippet", [s for s in snippets("php") if s.section in SCENARIOS], ids=lambda s: s.id
)
def test_doc_php_example(snippet: Snippet, whatsinfinity_emulator: RunningEmulator, tmp_path: Path):
    scenario = SCENARIOS[snippet.section]
    scenario.setup(whatsinfinity_emulator)
    code = with_base_url(snippet.code, whatsinfinity_emulator.url)
    out = subprocess.run(
        ["php", "-r", code.removeprefix("<?php")], capture_output=True, text=True, check=True
    )
    scenario.verify(whatsinfinity_emulator, json.loads(out.stdout), tmp_path)


# The doc's JSON examples: our answers have exactly their fields, and their values where fixed.


def test_401_example(whatsinfinity_emulator: RunningEmulator):
    _create(whatsinfinity_emulator)
    doc = doc_json("401 Unauthorized")
    for headers in ({}, {"x-api-key": "wrong-key-wrong-key"}):
        answer = httpx.get(f"{whatsinfinity_emulator.url}/check-session/{SESSION}", headers=headers)
        assert answer.status_code == 401
        body = answer.json()
        assert set(body) == set(doc)
        assert (body["success"], body["error"], body["details"]) == (
            doc["success"],
            doc["error"],
            doc["details"],
        )
        assert body["requestId"] == answer.headers["x-request-id"]


@pytest.mark.whatsinfinity_emulator(rate_limit=2, rate_window=30)
def test_429_example(linked: RunningEmulator, api: httpx.Client):
    doc = doc_json("429 example")
    send = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "hi"}
    assert [api.post("/send", json=send).status_code for _ in range(2)] == [200, 200]
    answer = api.post("/send", json=send)
    assert answer.status_code == 429
    body = answer.json()
    assert set(body) == set(doc)
    assert (body["error"], body["details"]) == (doc["error"], doc["details"])
    assert isinstance(body["retryAfter"], int)
    assert 1 <= body["retryAfter"] <= 30
    assert answer.headers["retry-after"] == str(body["retryAfter"])


def test_dry_run_example_response(linked: RunningEmulator, api: httpx.Client):
    doc = doc_json("Dry Run Mode")
    body = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "Dry run test", "dryRun": True}
    answer = api.post("/send", json=body).json()
    assert set(answer) == set(doc)
    assert answer["data"] == doc["data"]
    assert linked.outbox() == []


def test_response_format_examples(linked: RunningEmulator, api: httpx.Client):
    success_doc = doc_json("Response Format", 0)
    error_doc = doc_json("Response Format", 1)
    ok = api.get(f"/check-session/{SESSION}").json()
    assert set(ok) == set(success_doc)
    bad = api.post("/send", json={"sessionId": SESSION}).json()
    assert set(bad) == set(error_doc)
    assert bad["error"] == error_doc["error"]


# The doc's error table, row by row.

ERROR_TABLE = [
    ("missing fields", {"sessionId": SESSION, "to": PHONE, "type": "text"}, 400, "Bad Request", "message"),
    ("invalid sessionId", {"sessionId": "bad id!", "to": PHONE}, 400, "Invalid sessionId", "letters"),
    (
        "invalid phone",
        {"sessionId": SESSION, "to": "+91 9999", "type": "text", "message": "x"},
        400,
        "Bad Request",
        "Invalid phone number",
    ),
    (
        "message too long",
        {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "x" * 65001},
        400,
        "Bad Request",
        "Message too long",
    ),
    (
        "invalid url",
        {"sessionId": SESSION, "to": PHONE, "type": "image", "url": "ftp://x/y.jpg"},
        400,
        "Bad Request",
        "Invalid URL format",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "error", "hint"), [r[1:] for r in ERROR_TABLE], ids=[r[0] for r in ERROR_TABLE]
)
def test_error_table_400_rows(linked, api, body, status, error, hint):
    answer = api.post("/send", json=body)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert hint in answer.json()["details"]
    assert linked.outbox() == []


def test_error_table_401_422_500_rows(linked: RunningEmulator, api: httpx.Client):
    send = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "hi"}
    unauthorized = httpx.post(f"{linked.url}/send", json=send)
    assert (unauthorized.status_code, unauthorized.json()["error"]) == (401, "Unauthorized")
    linked.mark_unregistered("15550000000")
    not_on_whatsapp = api.post("/send", json={**send, "to": "15550000000"})
    assert not_on_whatsapp.status_code == 422
    assert not_on_whatsapp.json()["error"] == "Request failed"
    assert "Number not registered on WhatsApp" in not_on_whatsapp.json()["details"]
    linked.add_fault("/send", "status", status=500)
    server_error = api.post("/send", json=send)
    assert (server_error.status_code, server_error.json()["error"]) == (500, "Internal server error")
    assert linked.outbox() == []


@pytest.mark.whatsinfinity_emulator(queue_max=2)
def test_error_table_503_row(whatsinfinity_emulator: RunningEmulator, api: httpx.Client):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    send = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "hi"}
    assert [api.post("/send", json=send).json()["data"]["queued"] for _ in range(2)] == [True, True]
    full = api.post("/send", json=send)
    assert full.status_code == 503
    assert full.json()["error"] == "Request failed"
    assert "Message queue full" in full.json()["details"]
