"""Retry rules, proven with the emulator's fault modes: never a message twice, never a bare httpx error."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from airflow_provider_whatsinfinity.client import RetrySettings, WhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import (
    AuthenticationError,
    ConflictError,
    NotOnWhatsAppError,
    OutcomeUnknownError,
    QueueFullError,
    RateLimitedError,
    ServerError,
    ServiceUnreachableError,
    SessionNotFoundError,
    ValidationError,
)
from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
from tests.common import KEY, PHONE, SESSION, connection_json

FAST = RetrySettings(backoff_base=0.01, backoff_max=0.05)


def sends(emulator) -> int:
    return len(emulator.requests("/send"))


def checks(emulator) -> int:
    return len(emulator.requests(f"/check-session/{SESSION}"))


def fast_client(emulator, **settings) -> WhatsInfinityClient:
    retry = RetrySettings(**{"backoff_base": 0.01, "backoff_max": 0.05, **settings})
    return WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=emulator.url, retry=retry)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Sends whose answer is lost: outcome unknown, never retried.


def test_answer_lost_after_the_send_took_effect_is_outcome_unknown(hook, linked):
    linked.add_fault("/send", "after", then="status")
    with pytest.raises(OutcomeUnknownError) as raised:
        hook.send_text(PHONE, "exactly once")
    assert raised.value.status_code == 500
    assert f"requestId: {raised.value.request_id}" in str(raised.value)
    assert [m["message"] for m in linked.outbox()] == ["exactly once"]
    assert sends(linked) == 1


def test_connection_dropped_after_the_send_took_effect_is_outcome_unknown(hook, linked):
    linked.add_fault("/send", "after", then="drop")
    with pytest.raises(OutcomeUnknownError, match="may or may not have taken effect") as raised:
        hook.send_media(PHONE, "https://files.example.com/r.pdf")
    assert raised.value.status_code is None
    assert isinstance(raised.value.__cause__, Exception)
    assert len(linked.outbox()) == 1
    assert sends(linked) == 1


def test_dropped_send_is_not_retried_even_though_nothing_went_out(hook, linked):
    linked.add_fault("/send", "drop")
    with pytest.raises(OutcomeUnknownError):
        hook.send_text(PHONE, "lost")
    assert linked.outbox() == []
    assert sends(linked) == 1


def test_server_error_on_a_send_is_outcome_unknown(hook, linked):
    linked.add_fault("/send", "status", status=500, times=5)
    with pytest.raises(OutcomeUnknownError) as raised:
        hook.send_text(PHONE, "hi")
    assert raised.value.status_code == 500
    assert sends(linked) == 1


@pytest.mark.whatsinfinity_emulator(typing_delay=0.0)
def test_read_timeout_on_a_send_is_outcome_unknown_and_the_message_still_arrives_once(
    whatsinfinity_emulator, monkeypatch
):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.add_fault("/send", "delay", seconds=0.8)
    with pytest.raises(OutcomeUnknownError, match="ReadTimeout"):
        WhatsInfinityHook(timeout=0.2).send_text(PHONE, "slow")
    deadline = time.monotonic() + 5
    while not whatsinfinity_emulator.outbox() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m["message"] for m in whatsinfinity_emulator.outbox()] == ["slow"]
    assert sends(whatsinfinity_emulator) == 1


# Refusals the server made before doing anything: retried with backoff.


def test_queue_full_then_success_delivers_exactly_once(hook, linked, caplog):
    linked.add_fault("/send", "status", status=503, times=2)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_whatsinfinity.client"):
        result = hook.send_text(PHONE, "third time lucky")
    assert [m["messageId"] for m in linked.outbox()] == [result.message_id]
    assert sends(linked) == 3
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    seen_ids = [r["requestId"] for r in linked.requests("/send")[:2]]
    for line, request_id in zip(retries, seen_ids, strict=True):
        assert "Message queue full" in line
        assert request_id in line


def test_queue_full_gives_up_after_max_attempts(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.add_fault("/send", "status", status=503, times=50)
    client = fast_client(whatsinfinity_emulator, max_attempts=3)
    with pytest.raises(QueueFullError) as raised:
        client.send_text(PHONE, "hi")
    assert raised.value.transient is True
    assert sends(whatsinfinity_emulator) == 3
    assert whatsinfinity_emulator.outbox() == []


def test_unreachable_service_is_retried_then_raised_as_ours():
    url = closed_port_url()
    client = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url, retry=FAST)
    for call in (client.check_session, lambda: client.send_text(PHONE, "hi")):
        with pytest.raises(ServiceUnreachableError, match="could not reach") as raised:
            call()
        assert url in str(raised.value)
        assert KEY not in str(raised.value)


def test_unreachable_https_base_url():
    url = closed_port_url().replace("http://", "https://")
    client = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=url, retry=FAST)
    with pytest.raises(ServiceUnreachableError, match=r"https://127\.0\.0\.1"):
        client.check_session()


def test_retries_stop_at_the_deadline():
    client = WhatsInfinityClient(
        session_id=SESSION,
        api_key=KEY,
        base_url=closed_port_url(),
        retry=RetrySettings(max_attempts=1000, backoff_base=0.2, backoff_max=0.2, retry_deadline=0.5),
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnreachableError):
        client.check_session()
    assert time.monotonic() - started < 2


def test_default_retries_give_up_within_about_a_minute():
    settings = RetrySettings()
    assert settings.max_attempts >= 3
    worst_backoff = sum(
        min(settings.backoff_max, settings.backoff_base * 2**n) for n in range(settings.max_attempts - 1)
    )
    assert worst_backoff <= settings.retry_deadline <= 60


# Read-only calls: 5xx and timeouts are retried.


def test_read_only_call_is_retried_through_server_errors(hook, linked):
    linked.add_fault("/check-session", "status", status=500, times=2)
    assert hook.check_session().is_ready
    assert checks(linked) == 3


def test_read_only_call_is_retried_through_a_dropped_connection(hook, linked):
    linked.add_fault("/check-session", "drop")
    assert hook.check_session().is_ready
    assert checks(linked) == 2


def test_read_only_call_is_retried_after_a_timeout(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    whatsinfinity_emulator.add_fault("/check-session", "delay", seconds=1)
    assert WhatsInfinityHook(timeout=0.2).check_session().is_ready


def test_read_only_call_gives_up_as_a_server_error(whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.add_fault("/check-session", "status", status=502, times=50)
    with pytest.raises(ServerError) as raised:
        fast_client(whatsinfinity_emulator).check_session()
    assert raised.value.status_code == 502
    assert checks(whatsinfinity_emulator) == RetrySettings().max_attempts


def test_dry_run_is_retried_like_a_read(hook, linked):
    linked.add_fault("/send", "status", status=500, times=1)
    assert hook.send_text(PHONE, "check", dry_run=True).dry_run
    assert sends(linked) == 2


def test_unreadable_answer_is_a_server_error(hook, linked):
    linked.add_fault("/all-sessions", "status", status=502, times=50)
    with pytest.raises(ServerError):
        WhatsInfinityHook(max_attempts=1).list_sessions()


# Errors that retrying cannot fix: one request, no more.


def test_permanent_errors_are_never_retried(hook, whatsinfinity_emulator, monkeypatch):
    with pytest.raises(SessionNotFoundError):
        hook.send_text(PHONE, "hi")
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    with pytest.raises(ConflictError):
        hook.create_session()
    whatsinfinity_emulator.mark_unregistered("15550001111")
    with pytest.raises(NotOnWhatsAppError):
        hook.send_text("15550001111", "hi")
    whatsinfinity_emulator.add_fault("/send", "status", status=400)
    with pytest.raises(ValidationError):
        hook.send_text(PHONE, "hi")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WRONG", connection_json(whatsinfinity_emulator.url, password="wrong-key-0123456789")
    )
    with pytest.raises(AuthenticationError):
        WhatsInfinityHook("wrong").send_text(PHONE, "hi")
    assert sends(whatsinfinity_emulator) == 4
    assert len(whatsinfinity_emulator.requests("/create-session")) == 2
    assert whatsinfinity_emulator.outbox() == []


# 429: wait as long as the server says, within max_rate_limit_wait.


@pytest.mark.whatsinfinity_emulator(rate_limit=2, rate_window=1)
def test_rate_limit_waits_retry_after_and_sends_everything_once(whatsinfinity_emulator, monkeypatch, caplog):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    hook = WhatsInfinityHook()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_whatsinfinity.client"):
        results = [hook.send_text(PHONE, f"m{i}") for i in range(5)]
    elapsed = time.monotonic() - started
    assert [m["messageId"] for m in whatsinfinity_emulator.outbox()] == [r.message_id for r in results]
    refused = [r for r in whatsinfinity_emulator.requests("/send") if r["status"] == 429]
    assert len(refused) == 2
    assert elapsed >= 1.0  # five sends at two per second need at least two full windows
    waits = [r.getMessage() for r in caplog.records if "as the server asked" in r.getMessage()]
    assert len(waits) == 2
    assert all(request["requestId"] in line for request, line in zip(refused, waits, strict=True))


@pytest.mark.whatsinfinity_emulator(rate_limit=1, rate_window=30)
def test_rate_limit_beyond_max_wait_is_raised_at_once(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    conn = connection_json(whatsinfinity_emulator.url, max_rate_limit_wait=2)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", conn)
    hook = WhatsInfinityHook()
    hook.send_text(PHONE, "first")
    started = time.monotonic()
    with pytest.raises(RateLimitedError, match="max_rate_limit_wait") as raised:
        hook.send_text(PHONE, "second")
    assert time.monotonic() - started < 1
    assert raised.value.retry_after is not None
    assert 25 <= raised.value.retry_after <= 30
    assert raised.value.status_code == 429
    assert raised.value.request_id
    assert raised.value.to_dict()["retry_after"] == raised.value.retry_after
    assert len(whatsinfinity_emulator.outbox()) == 1


def test_injected_429_honours_its_retry_after(hook, linked):
    linked.add_fault("/send", "status", status=429, retryAfter=1, times=1)
    started = time.monotonic()
    hook.send_text(PHONE, "after a pause")
    assert time.monotonic() - started >= 1
    assert len(linked.outbox()) == 1
