"""
``make quickstart``: start the emulator and walk through the API doc's quick start against it.

Create a session, show its QR, link it (as if the QR were scanned), check it is ready, validate a
message with a dry run, send it, and show what the emulated phone received.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SESSION = "mysession"
API_KEY = "demo-session-api-key"
PHONE = "919999999999"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def show(step: str, response: httpx.Response) -> dict[str, Any]:
    print(f"\n== {step}: {response.request.method} {response.request.url.path} -> {response.status_code}")
    if response.headers.get("content-type", "").startswith("image/"):
        print(f"   {response.headers['content-type']}, {len(response.content)} bytes")
        return {}
    body: dict[str, Any] = response.json()
    print(json.dumps(body, indent=2))
    if not body.get("success"):
        raise SystemExit(f"demo failed at: {step}")
    return body


def main() -> int:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "airflow_provider_whatsinfinity.emulator", "--port", str(port)]
    command += ["--log-level", "warning", "--typing-delay", "0.5"]
    print("Starting the emulator:", " ".join(command[1:]))
    emulator = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base_url}/all-sessions", timeout=1)
                break
            except httpx.TransportError:
                if emulator.poll() is not None or time.monotonic() > deadline:
                    print("The emulator did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        with httpx.Client(base_url=base_url, headers={"x-api-key": API_KEY}, timeout=30) as api:
            show(
                "1. Create a session",
                api.post("/create-session", json={"sessionId": SESSION, "apiKey": API_KEY}),
            )
            qr = api.get(f"/qr/{SESSION}")
            show("2. Fetch the QR code to scan", qr)
            qr_file = Path(tempfile.gettempdir()) / "whatsinfinity-demo-qr.png"
            qr_file.write_bytes(qr.content)
            print(f"   saved to {qr_file}")
            show("   (the emulated phone scans it)", api.post(f"/_emulator/sessions/{SESSION}/link"))
            show("3. Confirm readiness", api.get(f"/check-session/{SESSION}"))
            message = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "Hello from my app!"}
            show("4a. Dry run", api.post("/send", json={**message, "dryRun": True}))
            show("4b. Send", api.post("/send", json={**message, "typing": True}))
            show("What the phone received", api.get("/_emulator/outbox", params={"sessionId": SESSION}))
        print("\nDemo finished: every step succeeded.")
        return 0
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
