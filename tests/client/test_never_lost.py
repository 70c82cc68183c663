"""
Never lost, never twice, at the client and the hook: what was found by a hostile review.

Each test talks to the emulator over real HTTP, some through a misbehaving proxy (``tests/proxy.py``)
or a transport that fails the way a real one can.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest

from airflow_provider_whatsinfinity.client import RetrySettings, WhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import (
    OutcomeUnknownError,
    QueueFullError,
    ServerError,
    ServiceUnreachableError,
    ValidationError,
)
from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
from tests.common import KEY, PHONE, SESSION, connection_json

FAST = RetrySettings(backoff_base=0.01, backoff_max=0.05)


def client_on(url: str, **options) -> WhatsInfinityClient:
    return WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url, retry=FAST, **options)


# 503s: only the API's own queue-full answer is retried ----------------------------------------


def test_a_proxys_plain_503_after_the_service_accepted_is_outcome_unknown(linked, proxy):
    proxy.lose_answer("/send")
    with client_on(proxy.url) as client, pytest.raises(OutcomeUnknownError, match="HTTP 503"):
        client.send_text(PHONE, "report")
    assert len(linked.outbox()) == 1  # it did go out; it was not sent again


def test_the_apis_own_queue_full_503_is_still_retried(linked):
    linked.add_fault("/send", "status", status=503, times=2)
    with client_on(linked.url) as client:
        client.send_text(PHONE, "report")
    assert [m["message"] for m in linked.outbox()] == ["report"]
    assert len(linked.requests("/send")) == 3


def test_a_plain_503_on_a_dry_run_is_retried_like_any_read(linked, proxy):
    proxy.refuse("/send")
    with client_on(proxy.url) as client, pytest.raises(ServerError, match="HTTP 503"):
        client.send_text(PHONE, "x", dry_run=True)  # a dry run changes nothing: safe to try again
    assert len(proxy.forwarded) == 0
    assert linked.outbox() == []


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/restart-session", lambda c: c.restart_session()),
        ("/delete-session", lambda c: c.delete_session()),
        ("/rotate-key", lambda c: c.rotate_key()),
        ("/create-session", lambda c: c.create_session()),
        ("/pairing-code", lambda c: c.request_pairing_code(PHONE)),
    ],
)
def test_any_503_on_a_changing_call_is_outcome_unknown(linked, path, call):
    # Even the API's JSON shape: only /send has a documented "queue full, nothing done" 503.
    before = len(linked.requests(path))  # the fixture created the session
    linked.add_fault(path, "status", status=503, times=5)
    with client_on(linked.url) as client, pytest.raises(OutcomeUnknownError):
        call(client)
    assert len(linked.requests(path)) == before + 1


# A key pasted with a space; requests the HTTP library refuses; a proxy that refuses --------------


def test_a_key_with_spaces_around_it_in_the_connection_is_stripped(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    value = connection_json(whatsinfinity_emulator.url, login=f" {SESSION}\n", password=f"  {KEY} \n")
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", value)
    hook = WhatsInfinityHook()
    ok, message = hook.test_connection()
    assert ok, message
    hook.send_text(PHONE, "hello")
    assert [m["message"] for m in whatsinfinity_emulator.outbox()] == ["hello"]


@pytest.mark.parametrize("key", [" " + KEY, KEY + "\t", "kéy-0123456789abcdef"])
def test_a_key_http_cannot_carry_is_refused_before_any_request_and_never_shown(linked, key):
    with pytest.raises(ValidationError, match="Invalid API key") as raised:
        WhatsInfinityClient(session_id=SESSION, api_key=key, base_url=linked.url)
    assert key.strip() not in str(raised.value)


def test_the_test_button_never_shows_the_key(linked, monkeypatch):
    secret = "kéy-0123456789abcdef-secret"
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(linked.url, password=secret))
    ok, message = WhatsInfinityHook().test_connection()
    assert not ok
    assert "Invalid API key" in message
    assert secret not in message
    assert "secret" not in message


class Refusing(httpx.BaseTransport):
    """A transport that fails before anything leaves, quoting a header the way h11 does."""

    def __init__(self, error: type[httpx.TransportError]) -> None:
        self.error = error
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise self.error(f"Illegal header value b'{request.headers['x-api-key']} '", request=request)


def test_a_request_the_http_library_refuses_is_never_sent_and_never_shows_the_key(linked):
    transport = Refusing(httpx.LocalProtocolError)
    with client_on(linked.url, transport=transport) as client, pytest.raises(ValidationError) as raised:
        client.send_text(PHONE, "hello")
    assert "nothing was sent" in str(raised.value)
    assert KEY not in str(raised.value)
    assert transport.calls == 1  # not retried: it would fail the same way


def test_a_proxy_refusing_the_connection_means_never_sent(linked):
    transport = Refusing(httpx.ProxyError)
    with (
        client_on(linked.url, transport=transport) as client,
        pytest.raises(ServiceUnreachableError) as raised,
    ):
        client.send_text(PHONE, "hello")
    assert KEY not in str(raised.value)
    assert transport.calls == FAST.max_attempts  # never sent, so it was safe to try again


def test_a_base_urls_password_never_reaches_an_error(linked):
    url = "http://user:hunter2-password@127.0.0.1:9"  # nothing listens on port 9
    client = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url, retry=FAST)
    with client, pytest.raises(ServiceUnreachableError) as raised:
        client.check_session()
    assert "hunter2" not in str(raised.value)
    assert "***@127.0.0.1:9" in str(raised.value)
    assert "hunter2" not in repr(client)


# One hook, several event loops ---------------------------------------------------------------


def test_one_hook_sends_from_two_event_loops(hook, linked):
    first = asyncio.run(hook.asend_text(PHONE, "one"))
    second = asyncio.run(hook.asend_text(PHONE, "two"))  # a new loop: a new pool, no RuntimeError
    assert [m["messageId"] for m in linked.outbox()] == [first.message_id, second.message_id]


class BreaksAfterSending(httpx.AsyncBaseTransport):
    """Forwards the request to the emulator, then fails with an error httpx never raises itself."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        raise RuntimeError("Event loop is closed")


def test_an_unexpected_error_after_the_request_left_is_outcome_unknown(linked):
    from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient

    async def send() -> None:
        client = AsyncWhatsInfinityClient(
            session_id=SESSION, api_key=KEY, base_url=linked.url, retry=FAST, transport=BreaksAfterSending()
        )
        async with client:
            await client.send_text(PHONE, "once")

    with pytest.raises(OutcomeUnknownError, match="RuntimeError"):
        asyncio.run(send())
    assert len(linked.outbox()) == 1


# Honest settings and limits ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", math.nan, math.inf])
@pytest.mark.parametrize("extra", ["timeout", "max_rate_limit_wait"])
def test_nan_and_infinite_extras_are_refused(linked, monkeypatch, extra, value):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSINFINITY_DEFAULT",
        json.dumps(json.loads(connection_json(linked.url)) | {"extra": {extra: str(value)}}),
    )
    with pytest.raises(ValidationError, match=f"extra '{extra}' must be a"):
        WhatsInfinityHook().check_session()


@pytest.mark.parametrize("name", ["backoff_base", "retry_deadline", "max_rate_limit_wait"])
def test_nan_retry_settings_are_refused(name):
    settings: dict[str, Any] = {name: math.nan}
    with pytest.raises(ValidationError, match=name):
        RetrySettings(**settings)


@pytest.mark.parametrize("suffix", ["?tenant=1", "/?x", "#frag", "/api?"])
def test_a_base_url_with_a_query_or_fragment_is_refused(linked, suffix):
    with pytest.raises(ValidationError, match="query or fragment"):
        client_on(linked.url + suffix)


def test_a_base_url_in_capitals_works(linked):
    with client_on(linked.url.replace("http://", "HTTP://")) as client:
        client.send_text(PHONE, "caps")
    assert [m["message"] for m in linked.outbox()] == ["caps"]


def test_a_long_presigned_url_is_sent(linked):
    url = (
        "https://bucket.s3.amazonaws.com/report.pdf?X-Amz-Security-Token="
        + "A" * 3000
        + "&X-Amz-Signature=ab"
    )
    with client_on(linked.url) as client:
        client.send_media(PHONE, url, media_type="document")
    assert [m["url"] for m in linked.outbox()] == [url]


# Message length as the service counts it -------------------------------------------------------

EMOJI = "\N{PARTY POPPER}"


def test_an_emoji_counts_two_so_what_the_client_accepts_the_service_accepts(linked):
    with client_on(linked.url) as client:
        client.send_text(PHONE, EMOJI * 32500)  # 65000 UTF-16 code units: exactly the limit
        with pytest.raises(ValidationError, match="65001 characters as WhatsInfinity counts them"):
            client.send_text(PHONE, EMOJI * 32500 + "x")
        with pytest.raises(ValidationError, match="80000 characters"):
            client.send_text(PHONE, EMOJI * 40000)
    assert len(linked.outbox()) == 1
    assert len(linked.requests("/send")) == 1


def test_text_that_cannot_be_encoded_is_a_validation_error(linked):
    with client_on(linked.url) as client, pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        client.send_text(PHONE, "bad \ud800 text")
    assert linked.requests("/send") == []


def test_a_queue_full_error_is_still_a_queue_full_error(linked):
    linked.add_fault("/send", "status", status=503, times=10)
    with client_on(linked.url) as client, pytest.raises(QueueFullError):
        client.send_text(PHONE, "x")
    assert linked.outbox() == []


def test_a_sensor_with_a_key_http_cannot_carry_fails_at_once_instead_of_polling(linked, monkeypatch):
    from airflow_provider_whatsinfinity._compat import AirflowFailException
    from airflow_provider_whatsinfinity.sensors.whatsinfinity import WhatsInfinitySessionReadySensor

    secret = "kéy-0123456789abcdef"
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(linked.url, password=secret))
    with pytest.raises(AirflowFailException, match="Invalid API key") as raised:
        WhatsInfinitySessionReadySensor(task_id="wait").poke({})
    assert secret not in str(raised.value)


@pytest.mark.parametrize("password", ["s3cr#t", "pa/ss", "p?ss", "p@ss:word"])
def test_a_password_with_url_characters_never_reaches_an_error(linked, monkeypatch, password):
    url = f"http://user:{password}@127.0.0.1:9"
    with pytest.raises(ValidationError) as raised:
        WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url + "?x")
    assert password not in str(raised.value)
    value = json.loads(connection_json(url)) | {"port": 8765}
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", json.dumps(value))
    ok, message = WhatsInfinityHook().test_connection()
    assert not ok
    assert password not in message


def test_a_number_too_large_for_a_float_is_refused_clearly(linked, monkeypatch):
    value = json.loads(connection_json(linked.url)) | {"extra": {"timeout": 10**400}}
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", json.dumps(value))
    with pytest.raises(ValidationError, match="extra 'timeout' must be a positive number"):
        WhatsInfinityHook().check_session()


def test_a_rotation_answered_without_its_new_key_is_outcome_unknown(linked, proxy):
    proxy.answer(
        "/rotate-key", 200, b'{"success": true, "requestId": "r-1", "data": {"sessionId": "mysession"}}'
    )
    with client_on(proxy.url) as client, pytest.raises(OutcomeUnknownError, match="without a new apiKey"):
        client.rotate_key()


def test_a_503_in_the_apis_shape_that_is_not_about_the_queue_is_outcome_unknown(linked, proxy):
    body = b'{"success": false, "requestId": "r-2", "error": "Service Unavailable", "details": "maintenance"}'
    proxy.answer("/send", 503, body)
    with client_on(proxy.url) as client, pytest.raises(OutcomeUnknownError):
        client.send_text(PHONE, "x")
