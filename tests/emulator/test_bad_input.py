"""Bad input never crashes the emulator and always gets the documented error shape, with a useful message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.common import KEY, PHONE, SESSION

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

ERROR_FIELDS = {"success", "requestId", "error", "details"}
MIB = 1024 * 1024
TEXT = {"sessionId": SESSION, "to": PHONE, "type": "text", "message": "hello"}
IMAGE = {"sessionId": SESSION, "to": PHONE, "type": "image", "url": "https://files.example.com/photo.jpg"}


def _oversized() -> bytes:
    return b'{"sessionId": "mysession", "message": "' + b"x" * MIB + b'"}'


def _streamed_oversized() -> Iterator[bytes]:
    yield b'{"sessionId": "mysession", "message": "'
    for _ in range(11):
        yield b"x" * 100_000
    yield b'"}'


def _exactly_the_limit() -> bytes:
    head = b'{"sessionId": "mysession", "message": "'
    return head + b"x" * (MIB - len(head) - 2) + b'"}'


@dataclass
class Row:
    id: str
    method: str
    path: str
    status: int
    error: str
    keyword: str
    # Called for each request, so that a streamed body can be sent again.
    body: Callable[[], dict[str, Any]] = field(default=lambda: {})


def _json(value: Any) -> Callable[[], dict[str, Any]]:
    return lambda: {"json": value}


def _raw(value: bytes) -> Callable[[], dict[str, Any]]:
    return lambda: {"content": value}


def without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != name}


def get_row(name: str, path: str, status: int, error: str, keyword: str) -> Row:
    return Row(name, "GET", path, status, error, keyword)


def raw_row(name: str, raw: bytes, keyword: str, path: str = "/send") -> Row:
    return Row(name, "POST", path, 400, "Bad Request", keyword, _raw(raw))


def post_row(name: str, path: str, body: Any, keyword: str, error: str = "Bad Request") -> Row:
    return Row(name, "POST", path, 400, error, keyword, _json(body))


def too_large_row(name: str, path: str, body: Callable[[], bytes | Iterator[bytes]]) -> Row:
    return Row(
        name, "POST", path, 413, "Payload Too Large", f"larger than {MIB} bytes", lambda: {"content": body()}
    )


def method_row(name: str, method: str, path: str) -> Row:
    return Row(name, method, path, 405, "Method Not Allowed", f"Method {method} is not allowed on {path}")


ROWS = [
    # Bodies that are not a JSON object.
    raw_row("malformed-json", b'{"sessionId": ', "Malformed JSON body: Expecting value at line 1 column 15"),
    raw_row("trailing-comma", b'{"a": 1,}', "Malformed JSON body"),
    raw_row("single-quotes", b"{'sessionId': 'mysession'}", "Malformed JSON body"),
    raw_row("json-array", b"[1, 2]", "must be a JSON object, got array"),
    raw_row("json-string", b'"hi"', "must be a JSON object, got string"),
    raw_row("json-number", b"42", "must be a JSON object, got number"),
    raw_row("json-null", b"null", "must be a JSON object, got null"),
    raw_row("json-true", b"true", "must be a JSON object, got boolean"),
    raw_row("empty-body", b"", "Request body is empty"),
    raw_row("blank-body", b" \r\n\t", "Request body is empty"),
    raw_row("non-utf8", b'{"message": "\xff\xfe\x80"}', "not UTF-8"),
    raw_row("latin-1", b'{"message": "caf\xe9"}', "not UTF-8"),
    raw_row("create-malformed", b"{{", "Malformed JSON", "/create-session"),
    raw_row("restart-array", b"[]", "got array", "/restart-session"),
    raw_row("rotate-empty", b"", "Request body is empty", "/rotate-key"),
    # Wrong types on /send, field by field.
    post_row("to-number", "/send", {**TEXT, "to": 919999999999}, "Field 'to' must be a string, got number"),
    post_row("to-missing", "/send", without(TEXT, "to"), "Missing required field: to"),
    post_row("to-plus", "/send", {**TEXT, "to": "+919999999999"}, "Invalid phone number"),
    post_row("type-number", "/send", {**TEXT, "type": 1}, "Field 'type' must be a string, got number"),
    post_row("type-unknown", "/send", {**TEXT, "type": "sticker"}, "Invalid type 'sticker'"),
    post_row(
        "message-list", "/send", {**TEXT, "message": ["hi"]}, "Field 'message' must be a string, got array"
    ),
    post_row(
        "message-object", "/send", {**TEXT, "message": {}}, "Field 'message' must be a string, got object"
    ),
    post_row("message-null", "/send", {**TEXT, "message": None}, "Missing required field: message"),
    post_row("message-blank", "/send", {**TEXT, "message": "   "}, "Field 'message' must not be empty"),
    post_row(
        "typing-yes", "/send", {**TEXT, "typing": "yes"}, "Field 'typing' must be a boolean (true or false)"
    ),
    post_row("typing-one", "/send", {**TEXT, "typing": 1}, "Field 'typing' must be a boolean"),
    post_row(
        "dryrun-one",
        "/send",
        {**TEXT, "dryRun": 1},
        "Field 'dryRun' must be a boolean (true or false), got number",
    ),
    post_row("dryrun-string", "/send", {**TEXT, "dryRun": "true"}, "Field 'dryRun' must be a boolean"),
    post_row(
        "caption-number", "/send", {**IMAGE, "caption": 12}, "Field 'caption' must be a string, got number"
    ),
    post_row(
        "url-object",
        "/send",
        {**IMAGE, "url": {"href": "https://x.example/a.jpg"}},
        "'url' must be a string, got object",
    ),
    post_row("url-missing", "/send", without(IMAGE, "url"), "Missing required field: url"),
    post_row("url-ftp", "/send", {**IMAGE, "url": "ftp://files.example.com/a.jpg"}, "Invalid URL format"),
    post_row(
        "url-spaces", "/send", {**IMAGE, "url": "https://files.example.com/a b.jpg"}, "Invalid URL format"
    ),
    post_row(
        "url-bad-port",
        "/send",
        {**IMAGE, "url": "https://files.example.com:port/a.jpg"},
        "Invalid URL format",
    ),
    post_row("url-no-host", "/send", {**IMAGE, "url": "https:///a.jpg"}, "Invalid URL format"),
    post_row(
        "filename-number",
        "/send",
        {**IMAGE, "type": "document", "fileName": 7},
        "Field 'fileName' must be a string",
    ),
    post_row(
        "filename-empty",
        "/send",
        {**IMAGE, "type": "document", "fileName": ""},
        "'fileName' must be 1 to 255",
    ),
    post_row(
        "media-unknown-ext",
        "/send",
        {**IMAGE, "type": "media", "url": "https://x.example/a.bin"},
        "Cannot detect",
    ),
    # sessionId in a body.
    post_row(
        "sessionid-number",
        "/send",
        {**TEXT, "sessionId": 12},
        "Field 'sessionId' must be a string, got number",
    ),
    post_row(
        "sessionid-list",
        "/send",
        {**TEXT, "sessionId": [SESSION]},
        "Field 'sessionId' must be a string, got array",
    ),
    post_row("sessionid-missing", "/send", without(TEXT, "sessionId"), "Missing required field: sessionId"),
    post_row(
        "sessionid-65-chars", "/send", {**TEXT, "sessionId": "a" * 65}, "1 to 64 letters", "Invalid sessionId"
    ),
    post_row("sessionid-empty", "/send", {**TEXT, "sessionId": ""}, "1 to 64 letters", "Invalid sessionId"),
    post_row(
        "sessionid-space",
        "/send",
        {**TEXT, "sessionId": "my session"},
        "1 to 64 letters",
        "Invalid sessionId",
    ),
    post_row(
        "sessionid-dots",
        "/send",
        {**TEXT, "sessionId": "../etc/passwd"},
        "1 to 64 letters",
        "Invalid sessionId",
    ),
    post_row(
        "sessionid-unicode", "/send", {**TEXT, "sessionId": "séssion"}, "1 to 64 letters", "Invalid sessionId"
    ),
    # Other endpoints.
    post_row(
        "create-apikey-short",
        "/create-session",
        {"sessionId": "fresh", "apiKey": "short"},
        "apiKey must be 16 to 256 printable characters (got 5)",
    ),
    post_row(
        "create-apikey-long", "/create-session", {"sessionId": "fresh", "apiKey": "k" * 257}, "(got 257)"
    ),
    post_row(
        "create-apikey-control-chars",
        "/create-session",
        {"sessionId": "fresh", "apiKey": "sixteen\nchars\tkey!"},
        "printable",
    ),
    post_row(
        "create-apikey-number",
        "/create-session",
        {"sessionId": "fresh", "apiKey": 12345678901234567},
        "Field 'apiKey' must be a string, got number",
    ),
    post_row(
        "create-apikey-missing", "/create-session", {"sessionId": "fresh"}, "Missing required field: apiKey"
    ),
    post_row(
        "create-sessionid-too-long",
        "/create-session",
        {"sessionId": "s" * 65, "apiKey": KEY},
        "1 to 64",
        "Invalid sessionId",
    ),
    post_row(
        "pairing-phone-letters",
        "/pairing-code",
        {"sessionId": SESSION, "phoneNumber": "call-me"},
        "Invalid phone number",
    ),
    post_row(
        "pairing-phone-number-type",
        "/pairing-code",
        {"sessionId": SESSION, "phoneNumber": 919999999999},
        "Field 'phoneNumber' must be a string, got number",
    ),
    post_row(
        "restart-wipe-yes",
        "/restart-session",
        {"sessionId": SESSION, "wipe": "yes"},
        "Field 'wipe' must be a boolean",
    ),
    post_row(
        "delete-sessionid-object",
        "/delete-session",
        {"sessionId": {"id": SESSION}},
        "Field 'sessionId' must be a string, got object",
    ),
    # Oversized bodies, with a Content-Length and streamed without one.
    too_large_row("oversized-content-length", "/send", _oversized),
    too_large_row("oversized-streamed", "/send", _streamed_oversized),
    too_large_row("oversized-create-session", "/create-session", _oversized),
    too_large_row("oversized-streamed-create-session", "/create-session", _streamed_oversized),
    # A body of exactly the limit is read and checked like any other.
    Row(
        "exactly-the-limit",
        "POST",
        "/send",
        400,
        "Bad Request",
        "Missing required field: to",
        lambda: {"content": _exactly_the_limit()},
    ),
    # Unknown paths and wrong methods.
    get_row("unknown-path", "/nope", 404, "Not Found", "No endpoint GET /nope"),
    get_row("unknown-versioned-path", "/v1/send", 404, "Not Found", "No endpoint GET /v1/send"),
    Row(
        "unknown-post",
        "POST",
        "/send-message",
        404,
        "Not Found",
        "No endpoint POST /send-message",
        _json(TEXT),
    ),
    get_row("root", "/", 404, "Not Found", "No endpoint GET /"),
    get_row("check-session-no-id", "/check-session/", 404, "Not Found", "No endpoint GET /check-session/"),
    method_row("send-get", "GET", "/send"),
    method_row("all-sessions-post", "POST", "/all-sessions"),
    method_row("create-delete", "DELETE", "/create-session"),
    method_row("check-put", "PUT", f"/check-session/{SESSION}"),
    method_row("qr-patch", "PATCH", f"/qr/{SESSION}"),
    # Path traversal and odd characters in a path's session ID.
    get_row("traversal-encoded-slash", "/check-session/..%2F..", 404, "Not Found", "No endpoint"),
    get_row(
        "traversal-etc-passwd",
        "/check-session/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        404,
        "Not Found",
        "No endpoint",
    ),
    get_row("traversal-qr", "/qr/..%2F..%2Fall-sessions", 404, "Not Found", "No endpoint"),
    get_row("dot-dot", "/check-session/%2e%2e", 400, "Invalid sessionId", "1 to 64 letters"),
    get_row("backslashes", "/check-session/..%5C..%5Cwin.ini", 400, "Invalid sessionId", "1 to 64 letters"),
    get_row("nul-byte", "/check-session/my%00session", 400, "Invalid sessionId", "1 to 64 letters"),
    get_row("percent-space", "/check-session/my%20session", 400, "Invalid sessionId", "1 to 64 letters"),
    get_row("path-65-chars", "/check-session/" + "a" * 65, 400, "Invalid sessionId", "1 to 64 letters"),
    get_row("qr-bad-chars", "/qr/%3Cscript%3E", 400, "Invalid sessionId", "1 to 64 letters"),
    get_row("unknown-session", "/check-session/nobody", 404, "Not Found", "Session 'nobody' not found"),
]


def call(client: httpx.Client, row: Row) -> httpx.Response:
    return client.request(row.method, row.path, **row.body())


def assert_row_answer(answer: httpx.Response, row: Row) -> None:
    assert answer.status_code == row.status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == ERROR_FIELDS, body
    assert body["success"] is False
    assert body["requestId"] == answer.headers["x-request-id"]
    assert body["error"] == row.error
    assert row.keyword in body["details"], body["details"]


def assert_still_healthy(emulator: RunningEmulator, client: httpx.Client) -> None:
    check = client.get(f"/check-session/{SESSION}")
    assert check.status_code == 200
    assert check.json()["data"]["status"] == "active"
    assert check.json()["data"]["queueSize"] == 0
    assert emulator.outbox() == []
    assert [s["sessionId"] for s in client.get("/all-sessions").json()["data"]["sessions"]] == [SESSION]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(linked: RunningEmulator, api: httpx.Client, row: Row):
    assert_row_answer(call(api, row), row)
    assert linked.requests()[-1]["status"] == row.status
    assert_still_healthy(linked, api)


def test_row_ids_are_unique():
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_whole_table_on_one_connection_then_normal_service(linked: RunningEmulator, api: httpx.Client):
    for row in ROWS:
        assert_row_answer(call(api, row), row)
    logged = linked.requests()[1:]  # after the fixture's create-session
    assert [r["status"] for r in logged] == [r.status for r in ROWS]
    assert linked.outbox() == []
    assert_still_healthy(linked, api)
    sent = api.post("/send", json=TEXT)
    assert sent.status_code == 200
    assert sent.json()["data"]["queued"] is False
    [delivered] = linked.outbox()
    assert (delivered["to"], delivered["message"]) == (PHONE, "hello")


def test_streamed_body_has_no_content_length(linked: RunningEmulator, api: httpx.Client):
    answer = api.post("/send", content=_streamed_oversized())
    assert "content-length" not in answer.request.headers
    assert answer.request.headers["transfer-encoding"] == "chunked"
    assert answer.status_code == 413


def test_405_lists_allowed_methods(linked: RunningEmulator, api: httpx.Client):
    assert api.get("/send").headers["allow"] == "POST"
    assert api.post("/all-sessions").headers["allow"] == "GET"


def test_wrong_or_missing_key_beats_bad_fields(linked: RunningEmulator):
    # Authentication comes before the fields are checked: a caller without the key learns nothing.
    with httpx.Client(base_url=linked.url) as client:
        answer = client.post("/send", json={**TEXT, "to": 5}, headers={"x-api-key": "not-the-right-key!"})
        assert (answer.status_code, answer.json()["error"]) == (401, "Unauthorized")
        answer = client.post("/send", json={**TEXT, "to": 5})
        assert (answer.status_code, answer.json()["error"]) == (401, "Unauthorized")
    assert linked.outbox() == []


def test_bad_input_to_control_api(linked: RunningEmulator):
    with httpx.Client(base_url=linked.url) as client:
        answer = client.post("/_emulator/unregistered", json={"numbers": "919999999999"})
        assert (answer.status_code, answer.json()["error"]) == (400, "Bad Request")
        assert "'numbers' must be a list" in answer.json()["details"]
        answer = client.post("/_emulator/sessions/..%2F../link")
        assert (answer.status_code, answer.json()["error"]) == (404, "Not Found")
        answer = client.post("/_emulator/sessions/bad%20id/link")
        assert (answer.status_code, answer.json()["error"]) == (400, "Invalid sessionId")
        answer = client.post(f"/_emulator/sessions/{SESSION}/warning", content=b"[]")
        assert (answer.status_code, answer.json()["error"]) == (400, "Bad Request")
    with httpx.Client(base_url=linked.url, headers={"x-api-key": KEY}) as api:
        assert_still_healthy(linked, api)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"sessionId": "mysession", "to": "919999999999", "type": "text", "message": "hi", "n": NaN}',
        b'{"sessionId": "mysession", "to": "919999999999", "type": "text", "message": "hi", "n": -Infinity}',
        json.dumps(TEXT).encode("utf-16"),
        json.dumps(TEXT).encode("utf-16-le"),
        json.dumps(TEXT).encode("utf-32"),
    ],
    ids=["nan", "minus-infinity", "utf-16-bom", "utf-16-le", "utf-32"],
)
def test_non_standard_json_is_refused(linked: RunningEmulator, api: httpx.Client, raw: bytes):
    answer = api.post("/send", content=raw)
    assert answer.status_code == 400
    assert answer.json()["error"] == "Bad Request"
    assert linked.outbox() == []


def _raw_json(value: Any) -> bytes:
    # ensure_ascii keeps a lone surrogate as a "\ud800" escape: valid JSON, but not text.
    return json.dumps(value).encode()


UNSTORABLE = [
    ("message", "/send", {**TEXT, "message": "hi \ud800"}, "'message'"),
    ("caption", "/send", {**IMAGE, "caption": "\udfff caption"}, "'caption'"),
    ("file-name", "/send", {**IMAGE, "type": "document", "fileName": "a\ud83d.pdf"}, "'fileName'"),
    ("session-id", "/send", {**TEXT, "sessionId": "my\ud800"}, "'sessionId'"),
    ("member-name", "/send", {**TEXT, "\ud800": 1}, "member name"),
    ("in-a-list", "/send", {**TEXT, "extra": [1, {"x": ["\ud800"]}]}, "'extra[1].x[0]'"),
    ("create-key", "/create-session", {"sessionId": "other", "apiKey": "k" * 16 + "\ud800"}, "'apiKey'"),
    ("warning", f"/_emulator/sessions/{SESSION}/warning", {"warning": "\udc00"}, "'warning'"),
    (
        "fault",
        "/_emulator/faults",
        {"path": "/send", "mode": "drop", "bodyContains": "\ud800"},
        "'bodyContains'",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "where"), [row[1:] for row in UNSTORABLE], ids=[row[0] for row in UNSTORABLE]
)
def test_lone_surrogate_is_refused_where_it_arrives(
    linked: RunningEmulator, api: httpx.Client, path: str, body: dict[str, Any], where: str
):
    answer = api.post(path, content=_raw_json(body), headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    payload = answer.json()
    assert set(payload) == ERROR_FIELDS
    assert payload["error"] == "Bad Request"
    assert "lone UTF-16 surrogate" in payload["details"]
    assert where in payload["details"]
    # Nothing unprintable was stored: every read of the state still answers.
    for read in ("/_emulator/outbox", "/_emulator/faults", "/all-sessions", f"/check-session/{SESSION}"):
        assert api.get(read).status_code == 200, read
    assert linked.outbox() == []
    assert_still_healthy(linked, api)


def test_surrogate_pairs_are_text(linked: RunningEmulator, api: httpx.Client):
    # An escaped pair is one character (here an emoji): fine, unlike a lone half.
    answer = api.post(
        "/send",
        content=b'{"sessionId": "mysession", "to": "919999999999", "type": "text", '
        b'"message": "hi \\ud83d\\ude00"}',
    )
    assert answer.status_code == 200, answer.text
    [sent] = linked.outbox()
    assert sent["message"] == "hi \U0001f600"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000],
    ids=["arrays", "objects"],
)
@pytest.mark.parametrize("path", ["/send", "/create-session", "/_emulator/faults"])
def test_deeply_nested_json_is_400(linked: RunningEmulator, api: httpx.Client, raw: bytes, path: str):
    answer = api.post(path, content=raw)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "Bad Request"
    assert "nested too deeply" in answer.json()["details"]
    assert_still_healthy(linked, api)
