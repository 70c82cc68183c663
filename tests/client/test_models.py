"""Answers the doc leaves open are read tolerantly: extra fields, other names, missing fields."""

from __future__ import annotations

import json

import pytest

from airflow_provider_whatsinfinity.answers import _Answer, _pairing_code, _session_list
from airflow_provider_whatsinfinity.exceptions import ServerError
from airflow_provider_whatsinfinity.models import SendResult, SessionStatus


def test_session_status_ignores_unknown_fields_and_fills_what_is_missing():
    status = SessionStatus.from_api(
        "mysession",
        {
            "status": "active",
            "queueSize": "3",
            "rateLimitRemaining": 7.0,
            "newField": {"x": 1},
            "battery": 80,
        },
    )
    assert status == SessionStatus(
        session_id="mysession",
        status="active",
        is_ready=True,
        has_qr=False,
        queue_size=3,
        rate_limit_remaining=7,
    )
    assert SessionStatus.from_api("s", {}).status == "unknown"
    assert SessionStatus.from_api("s", {"status": "qr", "warning": ""}).has_qr is True
    assert SessionStatus.from_api("s", {"queueSize": True}).queue_size is None


def test_pairing_code_under_either_name_with_letters():
    assert _pairing_code(_Answer({"pairingCode": "ABCD-1234"}, "r")) == "ABCD-1234"
    assert _pairing_code(_Answer({"code": "K7Q2M9XP", "expiresIn": 60}, "r")) == "K7Q2M9XP"
    assert _pairing_code(_Answer({"code": 12345678}, "r")) == "12345678"
    with pytest.raises(ServerError, match="without a pairing code") as raised:
        _pairing_code(_Answer({"status": "pairing"}, "req-1"))
    assert raised.value.request_id == "req-1"


def test_session_list_in_either_shape():
    listed = _session_list(_Answer({"sessions": [{"sessionId": "a", "status": "qr"}, "junk"]}, None))
    assert [(s.session_id, s.status) for s in listed] == [("a", "qr")]
    bare = _session_list(_Answer({"items": [{"id": "b", "status": "active"}]}, None))
    assert [(s.session_id, s.is_ready) for s in bare] == [("b", True)]


def test_send_result_is_json_safe_and_tolerant():
    result = SendResult.from_api("919999999999", {"id": "ABC", "queued": True, "extra": 1}, "req")
    assert (result.message_id, result.queued, result.dry_run, result.payload) == ("ABC", True, False, None)
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
