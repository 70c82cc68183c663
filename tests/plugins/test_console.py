"""The sessions console's JSON API, served by a real Airflow api-server, against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_whatsinfinity.emulator.process import free_port
from airflow_provider_whatsinfinity.plugins.sessions_api import CHECK_TIMEOUT
from tests.common import KEY, PHONE, decode_qr

if TYPE_CHECKING:
    from tests.plugins.conftest import AirflowServer

API = "/whatsinfinity/api/sessions"
ACTIONS = ["create", "restart", "pairing-code", "rotate-key", "delete"]
BODIES: dict[str, Any] = {"restart": {"wipe": False}, "pairing-code": {"phoneNumber": PHONE}}


def _rows(server: AirflowServer) -> dict[str, dict[str, Any]]:
    with server.client("admin") as admin:
        answer = admin.get(API)
    assert answer.status_code == 200, answer.text
    return {row["connId"]: row for row in answer.json()}


def _session_id() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def test_airflow_plugins_lists_the_console(airflow_server):
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "-o", "json"],
        env=airflow_server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "whatsinfinity_console" in listed.stdout


def test_anonymous_is_refused(airflow_server):
    with airflow_server.client(None) as anonymous:
        assert anonymous.get(API).status_code == 401
        assert anonymous.get(f"{API}/any/qr").status_code == 401
        for action in ACTIONS:
            assert anonymous.post(f"{API}/any/{action}", json=BODIES.get(action)).status_code == 401


def test_viewer_may_list_but_not_see_qr_nor_change(airflow_server, whatsinfinity_emulator):
    session = _session_id()
    whatsinfinity_emulator.create_session(session, KEY)
    conn_id = airflow_server.add_connection(whatsinfinity_emulator.url, session, KEY)
    with airflow_server.client("viewer") as viewer:
        listed = viewer.get(API)
        assert listed.status_code == 200, listed.text
        assert {row["connId"]: row for row in listed.json()}[conn_id]["status"] == "qr"
        assert KEY not in listed.text
        assert viewer.get(f"{API}/{conn_id}/qr").status_code == 403
        for action in ACTIONS:
            answer = viewer.post(f"{API}/{conn_id}/{action}", json=BODIES.get(action))
            assert answer.status_code == 403, (action, answer.text)
    assert _rows(airflow_server)[conn_id]["status"] == "qr"


def test_changes_are_post_only(airflow_server):
    with airflow_server.client("admin") as admin:
        for action in ACTIONS:
            assert admin.get(f"{API}/any/{action}").status_code == 405


def test_list_shows_each_sessions_state_and_errors_on_their_own_rows(airflow_server, whatsinfinity_emulator):
    good, other = _session_id(), _session_id()
    whatsinfinity_emulator.create_session(good, KEY, link=True)
    whatsinfinity_emulator.create_session(other, KEY)
    url = whatsinfinity_emulator.url
    wrong_key = "not-the-session-api-key-at-all"
    nowhere = f"http://user:url-secret-pw@127.0.0.1:{free_port()}"
    ok_id = airflow_server.add_connection(url, good, KEY)
    waiting_id = airflow_server.add_connection(url, other, KEY)
    wrong_id = airflow_server.add_connection(url, good, wrong_key)
    unknown_id = airflow_server.add_connection(url, _session_id(), KEY)
    down_id = airflow_server.add_connection(nowhere, good, KEY)

    with airflow_server.client("admin") as admin:
        answer = admin.get(API)
    assert answer.status_code == 200
    rows = {row["connId"]: row for row in answer.json()}
    expected_keys = {
        "connId",
        "baseUrl",
        "sessionId",
        "status",
        "isReady",
        "hasQR",
        "queueSize",
        "rateLimitRemaining",
        "lastActiveAt",
        "warning",
        "error",
    }
    assert all(set(row) == expected_keys for row in rows.values())
    ok = rows[ok_id]
    assert (ok["status"], ok["isReady"], ok["hasQR"], ok["error"]) == ("active", True, False, None)
    assert (ok["sessionId"], ok["baseUrl"], ok["queueSize"]) == (good, url, 0)
    assert ok["lastActiveAt"]
    assert ok["rateLimitRemaining"] is not None
    assert (rows[waiting_id]["status"], rows[waiting_id]["hasQR"]) == ("qr", True)
    assert rows[wrong_id]["error"].startswith("wrong API key")
    assert "requestId" in rows[wrong_id]["error"]
    assert rows[unknown_id]["error"].startswith("session not found")
    assert rows[down_id]["error"].startswith("unreachable")
    assert rows[down_id]["status"] is None
    for secret in (KEY, wrong_key, "url-secret-pw"):
        assert secret not in answer.text
    assert "url-secret-pw" not in airflow_server.log.read_text(errors="replace")


def test_slow_sessions_are_checked_at_once_each_within_its_bound(airflow_server, whatsinfinity_emulator):
    url = whatsinfinity_emulator.url
    fast = _session_id()
    whatsinfinity_emulator.create_session(fast, KEY, link=True)
    fast_id = airflow_server.add_connection(url, fast, KEY)
    slow_ids = []
    for _ in range(3):
        slow = _session_id()
        whatsinfinity_emulator.create_session(slow, KEY, link=True)
        whatsinfinity_emulator.add_fault(f"/check-session/{slow}", "delay", seconds=CHECK_TIMEOUT + 20)
        slow_ids.append(airflow_server.add_connection(url, slow, KEY))

    started = time.monotonic()
    rows = _rows(airflow_server)
    elapsed = time.monotonic() - started

    # One after the other, three slow checks would take three bounds; at once, about one.
    assert elapsed < 2 * CHECK_TIMEOUT, elapsed
    assert rows[fast_id]["error"] is None
    assert rows[fast_id]["status"] == "active"
    for slow_id in slow_ids:
        assert rows[slow_id]["error"].startswith("unreachable"), rows[slow_id]
        assert rows[slow_id]["status"] is None


def test_qr_is_the_emulators_current_qr(airflow_server, whatsinfinity_emulator):
    session = _session_id()
    whatsinfinity_emulator.create_session(session, KEY)
    conn_id = airflow_server.add_connection(whatsinfinity_emulator.url, session, KEY)
    with airflow_server.client("admin") as admin:
        answer = admin.get(f"{API}/{conn_id}/qr")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    direct = httpx.get(f"{whatsinfinity_emulator.url}/qr/{session}", headers={"x-api-key": KEY})
    assert decode_qr(answer.content) == decode_qr(direct.content)


def test_actions_and_key_rotation(airflow_server, whatsinfinity_emulator):
    session = _session_id()
    url = whatsinfinity_emulator.url
    conn_id = airflow_server.add_connection(url, session, KEY)
    bodies = []
    with airflow_server.client("admin") as admin:
        created = admin.post(f"{API}/{conn_id}/create")
        assert created.status_code == 200, created.text
        assert (created.json()["sessionId"], created.json()["status"]) == (session, "qr")
        paired = admin.post(f"{API}/{conn_id}/pairing-code", json={"phoneNumber": PHONE})
        assert paired.status_code == 200, paired.text
        assert len(paired.json()["pairingCode"]) == 8
        restarted = admin.post(f"{API}/{conn_id}/restart", json={"wipe": True})
        assert (restarted.status_code, restarted.json()["status"]) == (200, "qr")
        rotated = admin.post(f"{API}/{conn_id}/rotate-key")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json() == {"connId": conn_id, "rotated": True}
        bodies += [created.text, paired.text, restarted.text, rotated.text]

        # The connection now holds a key that works, and the old one is refused.
        assert _rows(airflow_server)[conn_id]["error"] is None
        old = httpx.get(f"{url}/check-session/{session}", headers={"x-api-key": KEY})
        assert old.status_code == 401
        stored = admin.get(f"/api/v2/connections/{conn_id}").json()
        bodies.append(json.dumps(stored))

        deleted = admin.post(f"{API}/{conn_id}/delete")
        assert deleted.status_code == 200, deleted.text
        assert _rows(airflow_server)[conn_id]["error"].startswith("session not found")
    for body in bodies:
        assert KEY not in body
    assert KEY not in airflow_server.log.read_text(errors="replace")


def test_errors_are_json_with_the_services_request_id(airflow_server, whatsinfinity_emulator):
    session = _session_id()
    conn_id = airflow_server.add_connection(whatsinfinity_emulator.url, session, KEY)
    with airflow_server.client("admin") as admin:
        missing = admin.get(f"{API}/{conn_id}/qr")
        assert missing.status_code == 404
        assert missing.json()["requestId"]
        assert "session not found" in missing.json()["error"]
        unknown = admin.post(f"{API}/no_such_connection/create")
        assert unknown.status_code == 404
        assert "no_such_connection" in unknown.json()["error"]
        admin.post(f"{API}/{conn_id}/create")
        bad_phone = admin.post(f"{API}/{conn_id}/pairing-code", json={"phoneNumber": "12"})
        assert bad_phone.status_code == 400, bad_phone.text
        assert bad_phone.json()["error"]
        bad_body = admin.post(f"{API}/{conn_id}/restart", json={"wipe": "maybe"})
        assert bad_body.status_code == 422, bad_body.text
        assert bad_body.json()["error"].startswith("Bad request: wipe:")
        for answer in (missing, unknown, bad_phone, bad_body):
            assert KEY not in answer.text
            assert "Traceback" not in answer.text
