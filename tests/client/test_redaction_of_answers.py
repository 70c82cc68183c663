"""A key quoted by a gateway's answer never reaches an error: in its text, cut or whole, or its fields."""

from __future__ import annotations

import httpx

from airflow_provider_whatsinfinity.answers import _answer
from airflow_provider_whatsinfinity.api import _Call

KEY = "key-alpha-0123456789-abcdef"


def error_text(response: httpx.Response) -> str:
    response.request = httpx.Request("POST", "http://gateway.invalid/send")
    call: _Call[object] = _Call(
        name="send", method="POST", path="/send", kind="change", parse=lambda answer: answer
    )
    try:
        _answer(call, response, KEY)
    except Exception as error:
        return f"{error} {error.__dict__}"
    raise AssertionError("an error answer was taken for a result")


def test_a_key_the_snippet_would_cut_is_hidden_whole():
    page = ("<html><body>" + "x" * 168 + f" key {KEY} revoked</body></html>").encode()
    assert KEY[:10] not in error_text(
        httpx.Response(401, content=page, headers={"content-type": "text/html"})
    )


def test_a_key_in_the_reason_phrase_is_hidden():
    response = httpx.Response(
        401, json={"success": False}, extensions={"reason_phrase": f"key {KEY} revoked".encode()}
    )
    assert KEY not in error_text(response)


def test_a_key_in_the_details_is_hidden():
    body = {
        "success": False,
        "error": "Unauthorized",
        "details": f"API key '{KEY}' is revoked",
        "requestId": KEY,
    }
    text = error_text(httpx.Response(401, json=body))
    assert KEY not in text
    assert "API key '***' is revoked" in text
