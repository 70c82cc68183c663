"""Every hook method, sync and async, against the emulator over real HTTP."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_whatsinfinity.exceptions import (
    AuthenticationError,
    ConflictError,
    NotOnWhatsAppError,
    SessionNotFoundError,
    ValidationError,
)
from airflow_provider_whatsinfinity.models import SendResult, SessionStatus
from tests.common import KEY, PHONE, SESSION, decode_qr


def test_session_lifecycle(hook, whatsinfinity_emulator):
    created = hook.create_session()
    assert created == SessionStatus(session_id=SESSION, status="qr", is_ready=False, has_qr=True)
    png = hook.get_qr()

    assert decode_qr(png).startswith("2@")
    code = hook.request_pairing_code("+91 (99999) 999-99")
    assert len(code) == 8
    assert hook.check_session().status == "pairing"
    whatsinfinity_emulator.link(SESSION)
    status = hook.check_session()
    assert (status.status, status.is_ready, status.has_qr, status.queue_size) == ("active", True, False, 0)
    assert status.rate_limit_remaining == 10
    assert status.last_active_at is not None
    assert [s.session_id for s in hook.list_sessions()] == [SESSION]
    assert hook.restart_session().status == "connecting"
    assert hook.restart_session(wipe=True).status == "qr"
    hook.delete_session()
    with pytest.raises(SessionNotFoundError) as raised:
        hook.check_session()
    assert raised.value.status_code == 404
    assert raised.value.request_id


def test_status_to_dict_is_json_safe(hook, linked):
    import json

    linked.set_warning(SESSION, "active elsewhere")
    as_dict = hook.check_session().to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["warning"] == "active elsewhere"
    assert set(as_dict) == {
        "session_id",
        "status",
        "is_ready",
        "has_qr",
        "queue_size",
        "rate_limit_remaining",
        "last_active_at",
        "warning",
    }


def test_send_text(hook, linked):
    result = hook.send_text("+91 99999 99999", "Nightly load finished", typing=True)
    assert isinstance(result, SendResult)
    [sent] = linked.outbox()
    assert (result.message_id, result.queued, result.dry_run, result.to) == (
        sent["messageId"],
        False,
        False,
        PHONE,
    )
    assert result.request_id
    assert sent["message"] == "Nightly load finished"
    assert result.to_dict()["message_id"] == sent["messageId"]


def test_send_text_dry_run(hook, linked):
    result = hook.send_text(PHONE, "Dry run test", dry_run=True)
    assert (result.dry_run, result.payload) == (True, {"text": "Dry run test"})
    assert linked.outbox() == []


def test_send_media_detects_the_type_and_passes_caption_and_file_name(hook, linked):
    hook.send_media(PHONE, "https://files.example.com/report.pdf", caption="Q3", file_name="Q3 report.pdf")
    hook.send_media(PHONE, "https://files.example.com/download?id=7", media_type="image")
    first, second = linked.outbox()
    assert (first["type"], first["caption"], first["fileName"]) == ("document", "Q3", "Q3 report.pdf")
    assert second["type"] == "image"


def test_send_media_dry_run(hook, linked):
    result = hook.send_media(PHONE, "https://files.example.com/clip.mp4", caption="c", dry_run=True)
    assert result.payload == {
        "video": {"url": "https://files.example.com/clip.mp4"},
        "mimetype": "video/mp4",
        "caption": "c",
    }
    assert linked.outbox() == []


def test_send_to_a_session_that_is_not_ready_queues(hook, whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    result = hook.send_text(PHONE, "later")
    assert result.queued is True
    assert hook.check_session().queue_size == 1
    whatsinfinity_emulator.link(SESSION)
    assert [m["messageId"] for m in whatsinfinity_emulator.outbox()] == [result.message_id]


def test_rotate_key_switches_the_hook_to_the_new_key(hook, linked):
    new_key = hook.rotate_key()
    assert new_key != KEY
    assert hook.check_session().is_ready
    assert asyncio.run(hook.acheck_session()).is_ready


def test_async_twins(hook, linked):
    async def run():
        status = await hook.acheck_session()
        text = await hook.asend_text(PHONE, "async hello")
        media = await hook.asend_media(PHONE, "https://files.example.com/a.png", caption="chart")
        dry = await hook.asend_text(PHONE, "dry", dry_run=True)
        client = await hook.get_async_client()
        assert client is await hook.get_async_client()  # one pooled client, reused
        await hook.aclose()
        return status, text, media, dry

    status, text, media, dry = asyncio.run(run())
    assert status.is_ready
    assert dry.payload == {"text": "dry"}
    assert [(m["messageId"], m["type"]) for m in linked.outbox()] == [
        (text.message_id, "text"),
        (media.message_id, "image"),
    ]


def test_server_errors_map_to_their_classes(hook, whatsinfinity_emulator):
    with pytest.raises(SessionNotFoundError):
        hook.send_text(PHONE, "nobody home")
    whatsinfinity_emulator.create_session(SESSION, KEY)
    with pytest.raises(ConflictError) as conflict:
        hook.create_session()
    assert conflict.value.status_code == 409
    whatsinfinity_emulator.link(SESSION)
    whatsinfinity_emulator.mark_unregistered("15550001111")
    with pytest.raises(NotOnWhatsAppError) as not_registered:
        hook.send_text("15550001111", "hi")
    assert "not registered" in str(not_registered.value)
    whatsinfinity_emulator.disable(SESSION)
    with pytest.raises(ConflictError, match="disabled"):
        hook.send_text(PHONE, "hi")
    assert whatsinfinity_emulator.outbox() == []


def test_wrong_key_is_an_authentication_error(whatsinfinity_emulator, monkeypatch):
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
    from tests.common import connection_json

    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    wrong = "wrong-key-0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_WRONG", connection_json(whatsinfinity_emulator.url, password=wrong))
    with pytest.raises(AuthenticationError) as raised:
        WhatsInfinityHook("wrong").send_text(PHONE, "hi")
    error = raised.value
    assert (error.status_code, error.error, error.details) == (
        401,
        "Unauthorized",
        "Invalid or missing API key",
    )
    assert f"requestId: {error.request_id}" in str(error)
    assert wrong not in str(error)
    assert wrong not in repr(error)


def test_server_side_validation_error_carries_the_request_id(hook, linked):
    # A 16-character session ID of valid characters passes local checks; the emulator decides.
    linked.add_fault("/send", "status", status=400)
    with pytest.raises(ValidationError) as raised:
        hook.send_text(PHONE, "hi")
    assert raised.value.status_code == 400
    assert raised.value.request_id
    assert f"requestId: {raised.value.request_id}" in str(raised.value)
