"""Session endpoints: create, QR, pairing, check, list, restart, delete, rotate, and their auth."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.common import KEY, SESSION, decode_qr


def status_of(api: httpx.Client, session_id: str = SESSION) -> str:
    return str(api.get(f"/check-session/{session_id}").json()["data"]["status"])


def wait_for_status(api: httpx.Client, wanted: str, timeout: float = 5) -> list[str]:
    seen = [status_of(api)]
    deadline = time.monotonic() + timeout
    while seen[-1] != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        seen.append(status_of(api))
    return seen


def test_create_session_validates_its_input(whatsinfinity_emulator, api):
    cases = [
        ({"sessionId": "my session", "apiKey": KEY}, "Invalid sessionId"),
        ({"sessionId": "x" * 65, "apiKey": KEY}, "Invalid sessionId"),
        ({"sessionId": "", "apiKey": KEY}, "Invalid sessionId"),
        ({"sessionId": SESSION, "apiKey": "short-key"}, "Bad Request"),
        ({"sessionId": SESSION}, "Bad Request"),
        ({"apiKey": KEY}, "Bad Request"),
    ]
    for body, error in cases:
        answer = api.post("/create-session", json=body)
        assert (answer.status_code, answer.json()["error"]) == (400, error), body
    assert api.get("/all-sessions").json()["data"]["sessions"] == []
    ok = api.post("/create-session", json={"sessionId": "a-Z_0" + "x" * 59, "apiKey": "k" * 16})
    assert ok.status_code == 200


def test_duplicate_session_is_a_conflict(whatsinfinity_emulator, api):
    assert api.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY}).status_code == 200
    again = api.post("/create-session", json={"sessionId": SESSION, "apiKey": "another-key-123456"})
    assert again.status_code == 409
    assert again.json()["error"] == "Conflict"
    # The first key still works: the duplicate changed nothing.
    assert api.get(f"/check-session/{SESSION}").status_code == 200


def test_every_protected_endpoint_needs_the_session_key(whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    calls = [
        ("GET", f"/qr/{SESSION}", None),
        ("GET", f"/check-session/{SESSION}", None),
        ("POST", "/pairing-code", {"sessionId": SESSION, "phoneNumber": "919999999999"}),
        ("POST", "/restart-session", {"sessionId": SESSION}),
        ("POST", "/delete-session", {"sessionId": SESSION}),
        ("POST", "/rotate-key", {"sessionId": SESSION}),
        ("POST", "/send", {"sessionId": SESSION, "to": "919999999999", "type": "text", "message": "x"}),
    ]
    for headers in ({}, {"x-api-key": ""}, {"x-api-key": "wrong-key-0123456789"}, {"x-api-key": KEY + "x"}):
        for method, path, body in calls:
            answer = httpx.request(method, whatsinfinity_emulator.url + path, json=body, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json()["details"] == "Invalid or missing API key"
    assert httpx.get(f"{whatsinfinity_emulator.url}/all-sessions").status_code == 200
    assert whatsinfinity_emulator.outbox() == []


def test_a_key_opens_only_its_own_session(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    whatsinfinity_emulator.create_session("other", "other-key-0123456789")
    assert api.get("/check-session/other").status_code == 401


def test_unknown_session_is_not_found(whatsinfinity_emulator, api):
    answer = api.get("/check-session/nobody")
    assert answer.status_code == 404
    assert "nobody" in answer.json()["details"]


@pytest.mark.whatsinfinity_emulator(qr_ttl=0.5)
def test_qr_expires_and_is_redrawn(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    first = api.get(f"/qr/{SESSION}")
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert first.headers["cache-control"] == "no-store"
    same = api.get(f"/qr/{SESSION}")
    assert decode_qr(same.content) == decode_qr(first.content)
    time.sleep(0.6)
    later = api.get(f"/qr/{SESSION}")
    assert decode_qr(later.content) != decode_qr(first.content)
    assert decode_qr(later.content).startswith("2@")


def test_no_qr_once_linked(linked, api):
    answer = api.get(f"/qr/{SESSION}")
    assert answer.status_code == 404
    assert answer.json()["success"] is False
    assert "active" in answer.json()["details"]
    assert api.get(f"/check-session/{SESSION}").json()["data"]["hasQR"] is False


def test_pairing_code(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    for bad in ("12345", "+919999999999", "9199999999999999", "91-999"):
        answer = api.post("/pairing-code", json={"sessionId": SESSION, "phoneNumber": bad})
        assert answer.status_code == 400
        assert "Invalid phone number" in answer.json()["details"]
    answer = api.post("/pairing-code", json={"sessionId": SESSION, "phoneNumber": "919999999999"})
    code = answer.json()["data"]["pairingCode"]
    assert len(code) == 8
    assert code.isalnum()
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert (data["status"], data["hasQR"], data["isReady"]) == ("pairing", False, False)
    assert api.get(f"/qr/{SESSION}").status_code == 404
    whatsinfinity_emulator.link(SESSION)
    again = api.post("/pairing-code", json={"sessionId": SESSION, "phoneNumber": "919999999999"})
    assert again.status_code == 409


def test_check_session_fields_and_warning(linked, api):
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert set(data) == {"status", "isReady", "hasQR", "queueSize", "rateLimitRemaining", "lastActiveAt"}
    linked.set_warning(SESSION, "This number is active on another device")
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert data["warning"] == "This number is active on another device"
    linked.set_warning(SESSION, None)
    assert "warning" not in api.get(f"/check-session/{SESSION}").json()["data"]


def test_status_follows_link_disconnect_disable(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    assert status_of(api) == "qr"
    whatsinfinity_emulator.link(SESSION)
    assert status_of(api) == "active"
    whatsinfinity_emulator.disconnect(SESSION)
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert (data["status"], data["isReady"], data["hasQR"]) == ("disconnected", False, False)
    assert data["lastActiveAt"] is not None
    whatsinfinity_emulator.disable(SESSION)
    assert status_of(api) == "disabled"


def test_all_sessions_lists_every_session_without_keys(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session("one", "one-key-0123456789", link=True)
    whatsinfinity_emulator.create_session("two", "two-key-0123456789")
    answer = httpx.get(f"{whatsinfinity_emulator.url}/all-sessions")
    sessions = {s["sessionId"]: s for s in answer.json()["data"]["sessions"]}
    assert (sessions["one"]["status"], sessions["two"]["status"]) == ("active", "qr")
    assert "key-0123456789" not in answer.text


def test_restart_without_wipe_reconnects_a_linked_session(linked, api):
    answer = api.post("/restart-session", json={"sessionId": SESSION, "wipe": False})
    assert answer.json()["data"] == {"sessionId": SESSION, "status": "connecting", "wiped": False}
    seen = wait_for_status(api, "active")
    assert seen[0] == "connecting"
    assert seen[-1] == "active"


def test_restart_delivers_what_queued_while_connecting(linked, api):
    api.post("/restart-session", json={"sessionId": SESSION})
    send = {"sessionId": SESSION, "to": "919999999999", "type": "text", "message": "during restart"}
    assert api.post("/send", json=send).json()["data"]["queued"] is True
    wait_for_status(api, "active")
    deadline = time.monotonic() + 5
    while not linked.outbox() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m["message"] for m in linked.outbox()] == ["during restart"]


def test_restart_with_wipe_returns_to_qr(linked, api):
    answer = api.post("/restart-session", json={"sessionId": SESSION, "wipe": True})
    assert answer.json()["data"]["status"] == "qr"
    time.sleep(0.4)  # longer than the fixture's connect delay: a wiped session must not reconnect
    data = api.get(f"/check-session/{SESSION}").json()["data"]
    assert (data["status"], data["hasQR"], data["isReady"]) == ("qr", True, False)
    assert api.get(f"/qr/{SESSION}").status_code == 200


def test_restart_of_an_unlinked_session_shows_a_new_qr(whatsinfinity_emulator, api):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    api.post("/pairing-code", json={"sessionId": SESSION, "phoneNumber": "919999999999"})
    assert api.post("/restart-session", json={"sessionId": SESSION}).json()["data"]["status"] == "qr"


def test_restart_re_enables_a_disabled_session(linked, api):
    linked.disable(SESSION)
    api.post("/restart-session", json={"sessionId": SESSION})
    assert wait_for_status(api, "active")[-1] == "active"


def test_restart_rejects_a_non_boolean_wipe(linked, api):
    answer = api.post("/restart-session", json={"sessionId": SESSION, "wipe": "yes"})
    assert answer.status_code == 400
    assert "wipe" in answer.json()["details"]
    assert status_of(api) == "active"


def test_delete_session(linked, api):
    assert api.post("/delete-session", json={"sessionId": SESSION}).json()["data"]["deleted"] is True
    for method, path, body in [
        ("GET", f"/check-session/{SESSION}", None),
        ("GET", f"/qr/{SESSION}", None),
        ("POST", "/delete-session", {"sessionId": SESSION}),
        ("POST", "/send", {"sessionId": SESSION, "to": "919999999999", "type": "text", "message": "x"}),
    ]:
        assert api.request(method, path, json=body).status_code == 404, path
    # The ID is free again.
    assert api.post("/create-session", json={"sessionId": SESSION, "apiKey": KEY}).status_code == 200


def test_rotate_key(linked, api):
    new_key = api.post("/rotate-key", json={"sessionId": SESSION}).json()["data"]["apiKey"]
    assert len(new_key) >= 16
    assert new_key != KEY
    assert api.get(f"/check-session/{SESSION}").status_code == 401
    fresh = httpx.get(f"{linked.url}/check-session/{SESSION}", headers={"x-api-key": new_key})
    # The session stays connected: rotation does not disconnect.
    assert fresh.json()["data"]["status"] == "active"


def test_request_ids_are_fresh_uuids_in_body_and_header(linked, api):
    answers = [api.get(f"/check-session/{SESSION}") for _ in range(3)] + [api.get("/nowhere")]
    ids = [a.json()["requestId"] for a in answers]
    assert len(set(ids)) == 4
    assert all(a.headers["x-request-id"] == a.json()["requestId"] for a in answers)
