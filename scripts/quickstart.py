"""
``make quickstart``: start the emulator and walk through the API doc's quick start against it.

Create a session, show its QR, link it (as if the QR were scanned), check it is ready, validate a
message with a dry run, send it, and show what the emulated phone received.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_whatsinfinity.emulator.process import EmulatorProcess

SESSION = "mysession"
API_KEY = "demo-session-api-key"
PHONE = "919999999999"


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
    emulator = EmulatorProcess("--log-level", "warning", "--typing-delay", "0.5", start_timeout=20)
    print("Starting the emulator:", " ".join([Path(emulator.command[0]).name, *emulator.command[1:]]))
    try:
        emulator.start()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        # The raw requests and answers are the point here, so the walk-through does not use the
        # emulator's control client: it shows each call, the control API's two included.
        with httpx.Client(base_url=emulator.url, headers={"x-api-key": API_KEY}, timeout=30) as api:
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
        emulator.stop()
        emulator.close()


if __name__ == "__main__":
    sys.exit(main())
