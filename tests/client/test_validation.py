"""Bad input raises ValidationError before any request: the emulator sees nothing."""

from __future__ import annotations

import pytest

from airflow_provider_whatsinfinity.client import WhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import ValidationError
from airflow_provider_whatsinfinity.validation import normalize_phone
from tests.common import KEY, PHONE, SESSION


@pytest.mark.parametrize(
    ("written", "digits"),
    [
        ("919999999999", "919999999999"),
        ("+91 99999 99999", "919999999999"),
        ("+1 (555) 010-9999", "15550109999"),
        ("44.20.7946.0958", "442079460958"),
        (" 1234567 ", "1234567"),
        (123456789012345, "123456789012345"),
    ],
)
def test_phone_numbers_are_normalized(written, digits):
    assert normalize_phone(written) == digits


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("123456", "6 digits"),
        ("1234567890123456", "16 digits"),
        ("+91 99999 9999x", "only a leading '+'"),
        ("91+9999999999", "only a leading '+'"),
        ("++919999999999", "only a leading '+'"),
        ("٩١٩٩٩٩٩٩٩٩٩", "only a leading '+'"),
        ("", "no digits"),
        ("+", "no digits"),
        ("( ) -", "no digits"),
        (True, "got bool"),
        (9.5, "got float"),
        (None, "got NoneType"),
    ],
)
def test_bad_phone_numbers(written, hint):
    with pytest.raises(ValidationError, match=r"Phone number|Invalid phone number") as raised:
        normalize_phone(written)
    assert hint in str(raised.value)
    assert raised.value.status_code is None


SEND_CASES = [
    ("text: bad number", lambda h: h.send_text("12", "hi"), "Invalid phone number"),
    ("text: empty", lambda h: h.send_text(PHONE, "  "), "Message is empty"),
    ("text: too long", lambda h: h.send_text(PHONE, "x" * 65001), "Message too long: 65001"),
    ("text: not a string", lambda h: h.send_text(PHONE, 42), "Message must be a string"),
    (
        "text: typing not bool",
        lambda h: h.send_text(PHONE, "hi", typing="yes"),
        "typing must be True or False",
    ),
    (
        "text: dry_run not bool",
        lambda h: h.send_text(PHONE, "hi", dry_run=1),
        "dry_run must be True or False",
    ),
    ("media: ftp", lambda h: h.send_media(PHONE, "ftp://x.example/a.pdf"), "Invalid URL"),
    ("media: no host", lambda h: h.send_media(PHONE, "https:///a.pdf"), "Invalid URL"),
    ("media: relative", lambda h: h.send_media(PHONE, "/tmp/a.pdf"), "Invalid URL"),
    ("media: undetectable", lambda h: h.send_media(PHONE, "https://x.example/a.rar"), "Cannot detect"),
    (
        "media: bad type",
        lambda h: h.send_media(PHONE, "https://x.example/a.pdf", media_type="pdf"),
        "media type",
    ),
    (
        "media: empty file name",
        lambda h: h.send_media(PHONE, "https://x.example/a.pdf", file_name=""),
        "File name",
    ),
    ("media: caption type", lambda h: h.send_media(PHONE, "https://x.example/a.pdf", caption=3), "Caption"),
    ("pairing: bad number", lambda h: h.request_pairing_code("abc"), "Invalid phone number"),
    ("restart: wipe not bool", lambda h: h.restart_session(wipe="no"), "wipe must be True or False"),
]


@pytest.mark.parametrize(("call", "hint"), [c[1:] for c in SEND_CASES], ids=[c[0] for c in SEND_CASES])
def test_invalid_calls_make_no_request(hook, linked, call, hint):
    before = linked.requests()  # creating the session
    with pytest.raises(ValidationError) as raised:
        call(hook)
    assert hint in str(raised.value)
    assert raised.value.status_code is None
    assert linked.requests() == before


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ({"session_id": "my session"}, "Invalid session ID"),
        ({"session_id": "x" * 65}, "Invalid session ID"),
        ({"api_key": "short"}, "16 to 256"),
        ({"api_key": ""}, "API key is missing"),
        ({"base_url": "ftp://example.com"}, "Invalid base URL"),
        ({"base_url": "http://"}, "Invalid base URL"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_invalid_client_settings(whatsinfinity_emulator, settings, hint):
    params = {"session_id": SESSION, "api_key": KEY, "base_url": whatsinfinity_emulator.url, **settings}
    with pytest.raises(ValidationError, match=hint) as raised:
        WhatsInfinityClient(**params)
    assert "short" not in str(raised.value)  # the key itself never shows
    assert whatsinfinity_emulator.requests() == []


@pytest.mark.parametrize(
    ("connection", "hint"),
    [
        ({"login": ""}, "has no Session ID"),
        ({"password": ""}, "has no API key"),
        ({"extra": {"timeout": "soon"}}, "extra 'timeout' must be a positive number"),
        ({"extra": {"timeout": 0}}, "extra 'timeout' must be a positive number"),
        ({"extra": {"max_rate_limit_wait": -1}}, "extra 'max_rate_limit_wait'"),
        ({"schema": "ftp", "host": "example.com"}, "schema 'ftp' is not http or https"),
    ],
)
def test_invalid_connections(whatsinfinity_emulator, monkeypatch, connection, hint):
    import json

    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

    conn = {
        "conn_type": "whatsinfinity",
        "host": whatsinfinity_emulator.url,
        "login": SESSION,
        "password": KEY,
    }
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", json.dumps({**conn, **connection}))
    with pytest.raises(ValidationError, match=hint):
        WhatsInfinityHook("broken").check_session()
    assert whatsinfinity_emulator.requests() == []


@pytest.mark.parametrize("url", ["http://xn--a.com", "http://a..b.com:80", "http://exämple..com"])
def test_base_urls_httpx_cannot_use_are_refused_up_front(url):
    with pytest.raises(ValidationError, match="Invalid base URL"):
        WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url)


def test_a_call_never_shows_the_key_in_its_repr():
    client = WhatsInfinityClient(
        session_id=SESSION, api_key="super-secret-key-123456", base_url="http://x.example"
    )
    assert "super-secret-key-123456" not in repr(client._create_session())
    assert "super-secret-key-123456" not in repr(client)
