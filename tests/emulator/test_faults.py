"""The fault injection of ``POST /_emulator/faults``, mode by mode, over real HTTP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.common import KEY, PHONE, SESSION

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.emulator import RunningEmulator

ERROR_FIELDS = {"success", "requestId", "error", "details"}
SEND = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "hello"}


def assert_error_shape(answer: httpx.Response, status: int, error: str, details: str) -> dict[str, Any]:
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert set(body) - {"retryAfter"} == ERROR_FIELDS
    assert body["success"] is False
    assert body["requestId"] == answer.headers["x-request-id"]
    assert len(body["requestId"]) == 36
    assert body["error"] == error
    assert details in body["details"]
    return body


def post_fault(emulator: RunningEmulator, spec: Any) -> httpx.Response:
    return httpx.post(f"{emulator.url}/_emulator/faults", json=spec)


# status -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "details"),
    [
        (400, "Bad Request", "Injected fault: HTTP 400"),
        (401, "Unauthorized", "Injected fault: HTTP 401"),
        (422, "Request failed", "Number not registered on WhatsApp"),
        (500, "Internal server error", "Unexpected error"),
        (502, "Bad Gateway", "Injected fault: HTTP 502"),
        (503, "Request failed", "Message queue full"),
        (504, "Gateway Timeout", "Injected fault: HTTP 504"),
    ],
)
def test_status_fault_answers_documented_shape_and_does_nothing(
    linked: RunningEmulator, api: httpx.Client, status: int, error: str, details: str
):
    linked.add_fault("/send", "status", status=status)
    answer = api.post("/send", json=SEND)
    body = assert_error_shape(answer, status, error, details)
    assert "retryAfter" not in body
    assert linked.outbox() == []
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 0
    [logged] = linked.requests("/send")
    assert (logged["status"], logged["requestId"]) == (status, body["requestId"])
    # It fired once (times defaults to 1): the next send goes through.
    assert api.post("/send", json=SEND).json()["data"]["queued"] is False
    assert len(linked.outbox()) == 1


def test_status_fault_on_create_session_creates_nothing(whatsinfinity_emulator: RunningEmulator):
    whatsinfinity_emulator.add_fault("/create-session", "status", status=500)
    answer = httpx.post(
        f"{whatsinfinity_emulator.url}/create-session", json={"sessionId": SESSION, "apiKey": KEY}
    )
    assert_error_shape(answer, 500, "Internal server error", "Unexpected error")
    listed = httpx.get(f"{whatsinfinity_emulator.url}/all-sessions").json()["data"]["sessions"]
    assert listed == []


def test_injected_429_carries_retry_after(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "status", status=429, retryAfter=7)
    answer = api.post("/send", json=SEND)
    body = assert_error_shape(answer, 429, "Rate limit exceeded", "Too many requests")
    assert body["retryAfter"] == 7
    assert answer.headers["retry-after"] == "7"
    assert linked.outbox() == []


def test_injected_429_default_retry_after_is_one(linked: RunningEmulator, api: httpx.Client):
    fault = linked.add_fault("/send", "status", status=429)
    assert fault["retryAfter"] == 1
    answer = api.post("/send", json=SEND)
    assert answer.json()["retryAfter"] == 1
    assert answer.headers["retry-after"] == "1"


# drop ---------------------------------------------------------------------------------------


def test_drop_closes_connection_without_answer(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "drop")
    with pytest.raises(httpx.TransportError):
        api.post("/send", json=SEND)
    assert linked.outbox() == []
    assert api.get(f"/check-session/{SESSION}").json()["data"]["queueSize"] == 0
    [logged] = linked.requests("/send")
    assert logged["status"] is None
    # The next request, on a fresh connection, is handled normally.
    assert api.post("/send", json=SEND).status_code == 200
    assert len(linked.outbox()) == 1


def test_drop_on_get(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/all-sessions", "drop")
    with pytest.raises(httpx.TransportError):
        api.get("/all-sessions")
    assert api.get("/all-sessions").status_code == 200


# delay --------------------------------------------------------------------------------------


def test_delay_handles_request_normally_after_the_delay(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "delay", seconds=0.3)
    started = time.monotonic()
    answer = api.post("/send", json=SEND)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json()["data"]["queued"] is False
    assert 0.3 <= elapsed < 10
    [sent] = linked.outbox()
    assert sent["message"] == "hello"
    # Spent after one request: the next one is not delayed.
    assert api.post("/send", json=SEND).status_code == 200
    [fault] = linked.faults()
    assert (fault["matched"], fault["fired"]) == (2, 1)


# after --------------------------------------------------------------------------------------


def test_after_then_status_delivers_once_but_answers_500(linked: RunningEmulator, api: httpx.Client):
    fault = linked.add_fault("/send", "after", then="status")
    assert (fault["then"], fault["status"]) == ("status", 500)
    answer = api.post("/send", json={**SEND, "message": "lost answer"})
    assert_error_shape(answer, 500, "Internal server error", "Unexpected error")
    [sent] = linked.outbox()
    assert (sent["to"], sent["message"], sent["queued"]) == (PHONE, "lost answer", False)
    assert linked.requests("/send")[0]["status"] == 500


def test_after_then_status_with_other_status(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "after", then="status", status=503)
    answer = api.post("/send", json=SEND)
    assert_error_shape(answer, 503, "Request failed", "Message queue full")
    assert len(linked.outbox()) == 1


def test_after_then_drop_delivers_once_and_drops(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "after", then="drop")
    with pytest.raises(httpx.TransportError):
        api.post("/send", json={**SEND, "message": "dropped answer"})
    [sent] = linked.outbox()
    assert sent["message"] == "dropped answer"
    # A client retrying after the drop sends a duplicate: that is what this mode lets tests see.
    assert api.post("/send", json={**SEND, "message": "dropped answer"}).status_code == 200
    assert [m["message"] for m in linked.outbox()] == ["dropped answer", "dropped answer"]


def test_after_on_create_session_creates_it(whatsinfinity_emulator: RunningEmulator):
    whatsinfinity_emulator.add_fault("/create-session", "after", then="status", status=502)
    answer = httpx.post(
        f"{whatsinfinity_emulator.url}/create-session", json={"sessionId": SESSION, "apiKey": KEY}
    )
    assert_error_shape(answer, 502, "Bad Gateway", "Injected fault")
    check = httpx.get(f"{whatsinfinity_emulator.url}/check-session/{SESSION}", headers={"x-api-key": KEY})
    assert check.json()["data"]["status"] == "qr"


# times and rate -----------------------------------------------------------------------------


def test_times_fires_n_times_then_stops(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "status", status=503, times=3)
    statuses = [api.post("/send", json=SEND).status_code for _ in range(5)]
    assert statuses == [503, 503, 503, 200, 200]
    [fault] = linked.faults()
    assert (fault["times"], fault["matched"], fault["fired"]) == (3, 5, 3)
    assert len(linked.outbox()) == 2


def test_times_defaults_to_one(linked: RunningEmulator, api: httpx.Client):
    fault = linked.add_fault("/send", "status", status=500)
    assert (fault["times"], fault["rate"], fault["fired"], fault["matched"]) == (1, None, 0, 0)
    assert [api.post("/send", json=SEND).status_code for _ in range(3)] == [500, 200, 200]


def _failures(api: httpx.Client, count: int) -> list[int]:
    return [i for i in range(count) if api.get(f"/check-session/{SESSION}").status_code == 503]


def test_rate_fires_for_about_that_share(linked: RunningEmulator, api: httpx.Client):
    fault = linked.add_fault("/check-session", "status", status=503, rate=0.25, seed=42)
    assert (fault["rate"], fault["seed"], fault["times"]) == (0.25, 42, None)
    failed = _failures(api, 200)
    [fault] = linked.faults()
    assert fault["matched"] == 200
    assert fault["fired"] == len(failed)
    assert 20 <= len(failed) <= 80
    # The same seed gives the same failures again.
    linked.clear_faults()
    linked.add_fault("/check-session", "status", status=503, rate=0.25, seed=42)
    assert _failures(api, 200) == failed


def test_rate_zero_and_one(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/check-session", "status", status=503, rate=0)
    assert _failures(api, 20) == []
    linked.clear_faults()
    linked.add_fault("/check-session", "status", status=503, rate=1)
    assert len(_failures(api, 20)) == 20


def test_rate_with_times_stops_after_times(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/check-session", "status", status=503, rate=1, times=4)
    assert _failures(api, 10) == [0, 1, 2, 3]
    [fault] = linked.faults()
    assert (fault["matched"], fault["fired"]) == (10, 4)


# Matching -----------------------------------------------------------------------------------


def test_path_prefix_matches_paths_below(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/check-session", "status", status=503, times=2)
    assert api.get(f"/check-session/{SESSION}").status_code == 503
    # A path that merely starts with the same letters is not below it.
    assert api.get("/check-sessions").status_code == 404
    assert api.get(f"/check-session/{SESSION}").status_code == 503
    [fault] = linked.faults()
    assert (fault["matched"], fault["fired"]) == (2, 2)


def test_trailing_slash_is_ignored(linked: RunningEmulator, api: httpx.Client):
    fault = linked.add_fault("/check-session/", "status", status=503)
    assert fault["path"] == "/check-session"
    assert api.get(f"/check-session/{SESSION}").status_code == 503


def test_full_path_matches_only_that_session(linked: RunningEmulator, api: httpx.Client):
    other_key = "another-key-of-16+chars"
    linked.create_session("other", other_key, link=True)
    linked.add_fault(f"/check-session/{SESSION}", "status", status=503, rate=1)
    assert api.get("/check-session/other", headers={"x-api-key": other_key}).status_code == 200
    assert api.get(f"/check-session/{SESSION}").status_code == 503
    assert api.post("/send", json=SEND).status_code == 200


def test_fault_on_one_path_leaves_others_alone(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "status", status=503, rate=1)
    assert api.get(f"/check-session/{SESSION}").status_code == 200
    assert api.get("/all-sessions").status_code == 200
    assert api.post("/send", json=SEND).status_code == 503


def test_method_filter(linked: RunningEmulator, api: httpx.Client):
    fault = linked.add_fault("/send", "status", status=503, method="get", rate=1)
    assert fault["method"] == "GET"
    assert api.post("/send", json=SEND).status_code == 200
    assert linked.faults()[0]["matched"] == 0
    # GET /send is normally a 405; the fault answers first.
    assert api.get("/send").status_code == 503
    assert linked.faults()[0]["fired"] == 1
    assert len(linked.outbox()) == 1


def test_without_method_any_method_matches(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "status", status=503, rate=1)
    assert api.get("/send").status_code == 503
    assert api.post("/send", json=SEND).status_code == 503


def test_first_firing_fault_wins(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "status", status=502, times=1)
    linked.add_fault("/send", "status", status=504, times=1)
    assert [api.post("/send", json=SEND).status_code for _ in range(3)] == [502, 504, 200]


@pytest.mark.parametrize("mode", ["status", "drop", "delay", "after"])
@pytest.mark.parametrize("path", ["/", "/_emulator"])
def test_control_paths_are_never_faulted(linked: RunningEmulator, mode: str, path: str):
    seen = linked.requests()
    options: dict[str, Any] = {"rate": 1}
    if mode == "status":
        options["status"] = 500
    if mode == "delay":
        options["seconds"] = 5
    if mode == "after":
        options["then"] = "drop"
    linked.add_fault(path, mode, **options)
    started = time.monotonic()
    assert linked.outbox() == []
    assert linked.link(SESSION)["status"] == "active"
    assert linked.disconnect(SESSION)["status"] == "disconnected"
    assert linked.link(SESSION)["status"] == "active"
    assert len(linked.faults()) == 1
    assert linked.requests() == seen
    assert httpx.get(f"{linked.url}/_emulator/config").status_code == 200
    assert httpx.get(f"{linked.url}/_emulator/no-such-control").status_code == 404
    assert time.monotonic() - started < 5
    [fault] = linked.faults()
    assert (fault["matched"], fault["fired"]) == (0, 0)
    linked.clear_faults()
    assert linked.faults() == []


def test_root_path_faults_every_api_path(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/", "status", status=503, rate=1)
    assert api.get("/all-sessions").status_code == 503
    assert api.get(f"/check-session/{SESSION}").status_code == 503
    assert api.post("/send", json=SEND).status_code == 503
    assert api.get("/no-such-endpoint").status_code == 503
    assert linked.faults()[0]["fired"] == 4


# Control of the fault list ------------------------------------------------------------------


def test_added_fault_is_listed_with_all_fields(whatsinfinity_emulator: RunningEmulator):
    spec = {
        "path": "/send",
        "mode": "after",
        "method": "POST",
        "status": 503,
        "seconds": 0,
        "then": "drop",
        "times": 2,
        "rate": 0.5,
        "retryAfter": 3,
        "seed": 7,
        "bodyContains": None,
    }
    answer = post_fault(whatsinfinity_emulator, spec)
    assert answer.status_code == 200
    added = answer.json()["data"]
    assert added == {**spec, "seconds": 0.0, "matched": 0, "fired": 0}
    assert whatsinfinity_emulator.faults() == [added]


def test_delete_clears_every_fault(linked: RunningEmulator, api: httpx.Client):
    linked.add_fault("/send", "status", status=503, rate=1)
    linked.add_fault("/check-session", "drop", rate=1)
    assert len(linked.faults()) == 2
    answer = httpx.delete(f"{linked.url}/_emulator/faults")
    assert answer.status_code == 200
    assert answer.json()["success"] is True
    assert answer.json()["data"] == {"faults": []}
    assert linked.faults() == []
    assert api.post("/send", json=SEND).status_code == 200
    assert api.get(f"/check-session/{SESSION}").status_code == 200


def test_reset_clears_faults(linked: RunningEmulator):
    linked.add_fault("/send", "status", status=503, rate=1)
    linked.reset()
    assert linked.faults() == []


INVALID_SPECS = [
    ("unknown mode", {"path": "/send", "mode": "explode"}, "'mode' must be one of"),
    ("no mode", {"path": "/send"}, "'mode' must be one of"),
    ("missing path", {"mode": "drop"}, "'path' must be a request path"),
    ("relative path", {"path": "send", "mode": "drop"}, "'path' must be a request path"),
    ("path not a string", {"path": 5, "mode": "drop"}, "'path' must be a request path"),
    ("rate above 1", {"path": "/send", "mode": "drop", "rate": 1.5}, "'rate' must be between 0 and 1"),
    ("negative rate", {"path": "/send", "mode": "drop", "rate": -0.1}, "'rate' must be between 0 and 1"),
    ("rate as string", {"path": "/send", "mode": "drop", "rate": "0.5"}, "'rate' must be a finite number"),
    ("status mode without status", {"path": "/send", "mode": "status"}, "needs a 'status'"),
    ("status out of range", {"path": "/send", "mode": "status", "status": 700}, "between 400 and 599"),
    ("status without a body", {"path": "/send", "mode": "status", "status": 204}, "400 and 599"),
    ("negative retryAfter", {"path": "/send", "mode": "drop", "retryAfter": -5}, "retryAfter"),
    ("status as string", {"path": "/send", "mode": "status", "status": "503"}, "'status' must be a finite"),
    ("status not whole", {"path": "/send", "mode": "status", "status": 503.5}, "whole number"),
    ("unknown field", {"path": "/send", "mode": "drop", "bogus": 1}, "Unknown fault fields: bogus"),
    (
        "misspelt field",
        {"path": "/send", "mode": "drop", "retry_after": 1},
        "Unknown fault fields: retry_after",
    ),
    ("times zero", {"path": "/send", "mode": "drop", "times": 0}, "'times' must be at least 1"),
    ("times negative", {"path": "/send", "mode": "drop", "times": -2}, "'times' must be at least 1"),
    ("times boolean", {"path": "/send", "mode": "drop", "times": True}, "'times' must be a finite number"),
    ("times not whole", {"path": "/send", "mode": "drop", "times": 1.5}, "whole number"),
    ("unknown then", {"path": "/send", "mode": "after", "then": "explode"}, "'then' must be one of"),
    ("negative seconds", {"path": "/send", "mode": "delay", "seconds": -1}, "'seconds' must be between"),
    ("seconds too long", {"path": "/send", "mode": "delay", "seconds": 601}, "'seconds' must be between"),
    ("method not a string", {"path": "/send", "mode": "drop", "method": 5}, "'method' must be a string"),
    ("seed not a number", {"path": "/send", "mode": "drop", "seed": "x"}, "'seed' must be a finite number"),
    ("body is a list", [{"path": "/send", "mode": "drop"}], "must be a JSON object, got array"),
]


@pytest.mark.parametrize(
    ("spec", "keyword"), [r[1:] for r in INVALID_SPECS], ids=[r[0] for r in INVALID_SPECS]
)
def test_invalid_fault_spec_is_400(whatsinfinity_emulator: RunningEmulator, spec: Any, keyword: str):
    answer = post_fault(whatsinfinity_emulator, spec)
    assert_error_shape(answer, 400, "Bad Request", keyword)
    assert whatsinfinity_emulator.faults() == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"path": "/send", "mode": "drop", "times": Infinity}',
        b'{"path": "/send", "mode": "status", "status": NaN}',
        b'{"path": "/send", "mode": "drop", "retryAfter": -Infinity}',
        b'{"path": "/send", "mode": "drop", "seed": NaN}',
    ],
    ids=["times-infinity", "status-nan", "retryafter-minus-infinity", "seed-nan"],
)
def test_non_finite_numbers_in_fault_spec_are_400(whatsinfinity_emulator: RunningEmulator, raw: bytes):
    answer = httpx.post(f"{whatsinfinity_emulator.url}/_emulator/faults", content=raw)
    assert answer.status_code == 400
    assert answer.json()["error"] == "Bad Request"
    assert whatsinfinity_emulator.faults() == []


@pytest.mark.parametrize("status", [101, 204, 304])
def test_bodyless_status_is_refused_or_keeps_the_connection_usable(
    whatsinfinity_emulator: RunningEmulator, status: int
):
    answer = post_fault(whatsinfinity_emulator, {"path": "/all-sessions", "mode": "status", "status": status})
    if answer.status_code == 400:
        return
    with httpx.Client(base_url=whatsinfinity_emulator.url) as client:
        assert client.get("/all-sessions").status_code == status
        assert client.get("/all-sessions").status_code == 200


def test_body_contains_narrows_a_fault_to_matching_requests(linked, api):
    linked.add_fault("/send", "status", status=503, times=5, bodyContains="447700900123")
    to_one = {"sessionId": SESSION, "to": "447700900123", "type": "text", "message": "x"}
    to_other = {**to_one, "to": "919999999999"}
    assert api.post("/send", json=to_other).status_code == 200
    assert api.post("/send", json=to_one).status_code == 503
    assert api.post("/send", json=to_other).status_code == 200
    [fault] = linked.faults()
    assert (fault["bodyContains"], fault["fired"]) == ("447700900123", 1)
    assert [m["to"] for m in linked.outbox()] == ["919999999999", "919999999999"]
