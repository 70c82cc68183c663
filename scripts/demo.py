"""
``make demo``: the example DAGs, run by Airflow against the WhatsInfinity emulator.

Starts the emulator (sessions link themselves after a second, media URLs are downloaded), a web
server for the report files, and a throw-away Airflow home; points the ``whatsinfinity_default``
connection at the emulator through ``AIRFLOW_CONN_WHATSINFINITY_DEFAULT``, and the many-sessions
example's ``whatsinfinity_a`` to ``_c`` at three more sessions the same way; runs the example DAGs
listed below with ``airflow dags test``; prints what the emulated phones received; stops everything.
Exits non-zero when anything failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_whatsinfinity.emulator.process import EmulatorProcess, free_port

REPO = Path(__file__).resolve().parents[1]
SESSION = "demo-session"
API_KEY = "demo-session-key-0123"
#: The sessions of example_whatsinfinity_many_sessions: connection id -> (session ID, API key).
MANY_SESSIONS = {
    "whatsinfinity_a": ("demo-session-a", "demo-session-a-key-0123"),
    "whatsinfinity_b": ("demo-session-b", "demo-session-b-key-0123"),
    "whatsinfinity_c": ("demo-session-c", "demo-session-c-key-0123"),
}
DAGS = [
    ("example_whatsinfinity_daily_report", "daily PDF report to two recipients"),
    ("example_whatsinfinity_sensor_gated", "deferrable sensor, then a text and a chart"),
    ("example_whatsinfinity_failure_alerts", "a failing task alerts the on-call phone"),
    (
        "example_whatsinfinity_many_sessions",
        "one report to six people over three sessions: one task, then one mapped task per session",
    ),
]


def connection(url: str, session_id: str, api_key: str) -> str:
    """An ``AIRFLOW_CONN_...`` value: a WhatsInfinity connection to one of the emulator's sessions."""
    return json.dumps({"conn_type": "whatsinfinity", "host": url, "login": session_id, "password": api_key})


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


def show_outbox(messages: list[dict[str, Any]]) -> None:
    print(f"\nWhat the emulated phones received ({len(messages)} messages):")
    for message in messages:
        when = message["deliveredAt"][11:19]
        if message["type"] == "text":
            text = message["message"].replace("\n", " / ")
            what = f'"{text[:90]}{"..." if len(text) > 90 else ""}"'
        else:
            what = f"{message['type']} {message.get('fileName') or message['url'].rsplit('/', 1)[-1]}"
            if message.get("caption"):
                what += f' "{message["caption"]}"'
            if "size" in message:
                what += f", {message['size']} bytes, sha256 {message['sha256'][:16]}..."
        print(f"  {when}  to {message['to']:<15} {what}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="whatsinfinity-demo-"))
    reports = work / "reports"
    reports.mkdir()
    files_port = free_port()
    emulator = EmulatorProcess(
        *("--auto-link", "1", "--fetch-media", "--typing-delay", "0.3", "--log-level", "warning")
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work}/airflow/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_WHATSINFINITY_DEFAULT": connection(emulator.url, SESSION, API_KEY),
        **{
            f"AIRFLOW_CONN_{conn_id.upper()}": connection(emulator.url, session_id, api_key)
            for conn_id, (session_id, api_key) in MANY_SESSIONS.items()
        },
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    files: subprocess.Popen[bytes] | None = None
    failed = []
    try:
        print(f"Emulator on {emulator.url} (auto-link after 1 s, media downloaded and fingerprinted)")
        emulator.launch()
        print(f"Report files served from {reports} on http://127.0.0.1:{files_port}")
        files = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(files_port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(reports),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            emulator.wait_until_ready()
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        wait_until_up(f"http://127.0.0.1:{files_port}/", files, "The file server")

        status = emulator.create_session(SESSION, API_KEY)["status"]
        print(f"Session {SESSION!r} created: {status} (the phone scans it in a second)")
        for session_id, api_key in MANY_SESSIONS.values():
            emulator.create_session(session_id, api_key)
        print(f"Sessions {', '.join(repr(s) for s, _ in MANY_SESSIONS.values())} created the same way")

        print(f"Airflow home {work / 'airflow'}: migrating its database...")
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)

        conf = json.dumps({"report_dir": str(reports), "report_base_url": f"http://127.0.0.1:{files_port}"})
        for number, (dag_id, what) in enumerate(DAGS, start=1):
            log = work / f"{dag_id}.log"
            started = time.monotonic()
            with log.open("wb") as out:
                result = subprocess.run(
                    [airflow, "dags", "test", dag_id, "-c", conf],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            took = time.monotonic() - started
            verdict = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
            print(f"{number}. airflow dags test {dag_id}: {verdict} in {took:.1f} s - {what}")
            if result.returncode != 0:
                failed.append(dag_id)
                print("   last lines of its log:")
                for line in log.read_text(errors="replace").splitlines()[-15:]:
                    print(f"   | {line}")
            print(f"   log: {log}")

        outbox = emulator.outbox()
        show_outbox(outbox)
        ids = [m["messageId"] for m in outbox]
        if len(ids) != len(set(ids)):
            failed.append("duplicate deliveries")
        served = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in reports.iterdir()}
        fetched = [m for m in outbox if "sha256" in m]
        if not fetched or any(served.get(m["url"].rsplit("/", 1)[-1]) != m["sha256"] for m in fetched):
            failed.append("media fingerprints do not match the files served")
        else:
            print(f"  ({len(fetched)} media messages: sha256 matches the files served)")
    finally:
        if files is not None:
            files.terminate()
        emulator.stop()
        emulator.close()
        if files is not None:
            try:
                files.wait(timeout=10)
            except subprocess.TimeoutExpired:
                files.kill()
    if failed:
        print(f"\nDemo failed: {', '.join(failed)}. Logs are in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("\nDemo finished: every DAG run succeeded, and every message arrived exactly once.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
