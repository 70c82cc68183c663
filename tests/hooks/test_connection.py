"""The connection: env vars in URI and JSON form, the form metadata, test_connection, secret masking."""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from airflow_provider_whatsinfinity.exceptions import WhatsInfinityError
from airflow_provider_whatsinfinity.get_provider_info import (
    CONN_FIELDS,
    UI_FIELD_BEHAVIOUR,
    get_provider_info,
)
from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook, base_url_of
from tests.common import KEY, PHONE, SESSION, connection_json

if TYPE_CHECKING:
    from collections.abc import Callable


def uri_for(url: str, login: str = SESSION, password: str = KEY, query: str = "") -> str:
    # The base URL goes in the host part, percent-encoded, so that its scheme and port survive.
    host = quote(url, safe="")
    return f"whatsinfinity://{quote(login)}:{quote(password, safe='')}@{host}{query}"


@pytest.mark.parametrize("form", ["uri", "json"])
def test_connection_from_environment_variable(whatsinfinity_emulator, monkeypatch, form):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    url = whatsinfinity_emulator.url
    value = uri_for(url, query="?timeout=5") if form == "uri" else connection_json(url, timeout=5)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", value)
    hook = WhatsInfinityHook()
    assert hook.client.base_url == url
    assert hook.client.timeout == 5
    hook.send_text(PHONE, f"from a {form} connection")
    assert [m["message"] for m in whatsinfinity_emulator.outbox()] == [f"from a {form} connection"]


def test_uri_with_host_and_port_fields(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    host_port = whatsinfinity_emulator.url.removeprefix("http://")
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN", f"whatsinfinity://{SESSION}:{KEY}@{host_port}")
    assert WhatsInfinityHook("plain").check_session().is_ready


@pytest.mark.parametrize(
    ("connection", "base_url"),
    [
        ({}, "http://api.whatsinfinity.com"),
        ({"host": "https://api.whatsinfinity.com"}, "https://api.whatsinfinity.com"),
        ({"host": "https://proxy.example.com/whatsinfinity/"}, "https://proxy.example.com/whatsinfinity"),
        ({"host": "api.example.com", "schema": "https"}, "https://api.example.com"),
        ({"host": "api.example.com", "schema": "https", "port": 8443}, "https://api.example.com:8443"),
        ({"host": "127.0.0.1", "port": 8765}, "http://127.0.0.1:8765"),
        ({"host": "http://127.0.0.1:8765", "port": 9999}, "http://127.0.0.1:8765"),
    ],
)
def test_base_url_of(connection, base_url):
    from airflow.sdk import Connection

    conn = Connection(conn_id="c", conn_type="whatsinfinity", login=SESSION, password=KEY, **connection)
    assert base_url_of(conn) == base_url


def test_https_json_connection_from_environment(monkeypatch):
    value = connection_json("https://api.whatsinfinity.com", timeout=12, max_rate_limit_wait=30)
    monkeypatch.setenv("AIRFLOW_CONN_PROD", value)
    client = WhatsInfinityHook("prod").client
    assert (client.base_url, client.timeout, client.retry.max_rate_limit_wait) == (
        "https://api.whatsinfinity.com",
        12,
        30,
    )


def test_https_uri_connection_from_environment(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PROD", uri_for("https://api.whatsinfinity.com", query="?max_rate_limit_wait=0")
    )
    client = WhatsInfinityHook("prod").client
    assert (client.base_url, client.retry.max_rate_limit_wait) == ("https://api.whatsinfinity.com", 0)


def test_hook_arguments_override_the_extras(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PROD", connection_json("https://api.whatsinfinity.com", timeout=12))
    client = WhatsInfinityHook("prod", timeout=3, max_rate_limit_wait=7, max_attempts=2).client
    assert (client.timeout, client.retry.max_rate_limit_wait, client.retry.max_attempts) == (3, 7, 2)


# test_connection: the UI's Test button.


def test_test_connection_succeeds_and_names_the_session(hook, linked):
    linked.set_warning(SESSION, "active on another device")
    ok, message = hook.test_connection()
    assert ok is True
    assert message == (
        f"Connected to WhatsInfinity session '{SESSION}': status active, ready to send; "
        "warning: active on another device"
    )


def test_test_connection_reports_a_session_waiting_for_its_qr(hook, whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    assert hook.test_connection() == (
        True,
        f"Connected to WhatsInfinity session '{SESSION}': status qr, not ready to send yet",
    )


def test_test_connection_fails_with_the_reason(whatsinfinity_emulator, monkeypatch):
    whatsinfinity_emulator.create_session(SESSION, KEY)
    cases = {
        "unknown": (connection_json(whatsinfinity_emulator.url, login="nobody"), "HTTP 404"),
        "wrong_key": (
            connection_json(whatsinfinity_emulator.url, password="wrong-key-0123456789"),
            "HTTP 401",
        ),
        "no_login": (connection_json(whatsinfinity_emulator.url, login=""), "has no Session ID"),
        "short_key": (connection_json(whatsinfinity_emulator.url, password="short"), "Invalid API key"),
    }
    for conn_id, (value, reason) in cases.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
        ok, message = WhatsInfinityHook(conn_id).test_connection()
        assert ok is False, conn_id
        assert reason in message, (conn_id, message)
        assert "wrong-key" not in message
    # One request per test, no retries: the button answers at once.
    assert len(whatsinfinity_emulator.requests("/check-session/nobody")) == 1


def test_test_connection_to_nothing_fails_fast(monkeypatch):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", connection_json(f"http://127.0.0.1:{port}"))
    started = time.monotonic()
    ok, message = WhatsInfinityHook("down").test_connection()
    assert ok is False
    assert "could not reach" in message
    assert time.monotonic() - started < 2


def test_missing_connection_fails_the_test_with_its_id():
    ok, message = WhatsInfinityHook("does_not_exist").test_connection()
    assert ok is False
    assert "does_not_exist" in message


# The API key stays secret.


def test_api_key_never_shows_in_logs_errors_or_reprs(whatsinfinity_emulator, monkeypatch, caplog):
    key = "SECRET-key-7f3a9c2e5b1d"
    whatsinfinity_emulator.create_session(SESSION, key, link=True)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url, password=key)
    )
    hook = WhatsInfinityHook(max_attempts=2)
    texts = []
    with caplog.at_level(logging.DEBUG):
        hook.check_session()
        hook.send_text(PHONE, "hello", typing=True)
        whatsinfinity_emulator.add_fault("/send", "status", status=503, times=1)
        hook.send_media(PHONE, "https://files.example.com/a.pdf")
        faults: list[tuple[dict[str, Any], Callable[[], object]]] = [
            ({"mode": "after"}, lambda: hook.send_text(PHONE, "lost")),
            ({"mode": "status", "status": 401}, lambda: hook.check_session()),
            ({"mode": "status", "status": 500, "times": 5}, lambda: hook.list_sessions()),
        ]
        for fault, call in faults:
            whatsinfinity_emulator.add_fault(fault.pop("path", "/"), **fault)
            with pytest.raises(WhatsInfinityError) as raised:
                call()
            whatsinfinity_emulator.clear_faults()
            texts += [str(raised.value), repr(raised.value), json.dumps(raised.value.to_dict())]
        new_key = hook.rotate_key()
        hook.check_session()
    texts += [caplog.text, repr(hook), repr(hook.client), str(hook.client.__dict__.get("retry"))]
    texts += [json.dumps(hook.check_session().to_dict())]
    for text in texts:
        assert key not in text
        assert new_key not in text
    assert any("retrying" in r.getMessage() for r in caplog.records)  # the logs were captured


def test_api_keys_are_registered_with_the_secret_masker(hook, linked):
    from airflow_provider_whatsinfinity._compat import redact

    hook.check_session()
    assert redact(f"key={KEY}") == "key=***"
    new_key = hook.rotate_key()
    assert redact(f"rotated to {new_key}") == "rotated to ***"


# The connection form and the provider's metadata.


def test_provider_info_matches_airflows_schema():
    import jsonschema

    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    [conn_type] = info["connection-types"]
    assert conn_type["connection-type"] == WhatsInfinityHook.conn_type == "whatsinfinity"
    assert conn_type["hook-name"] == "WhatsInfinity"
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is WhatsInfinityHook


def test_connection_form_metadata():
    behaviour = UI_FIELD_BEHAVIOUR
    assert behaviour["relabeling"] == {"host": "Base URL", "login": "Session ID", "password": "API key"}
    assert set(behaviour["hidden-fields"]) == {"schema", "port", "extra"}
    assert set(CONN_FIELDS) == {"timeout", "max_rate_limit_wait"}
    assert CONN_FIELDS["timeout"]["schema"]["default"] == 30
    assert CONN_FIELDS["max_rate_limit_wait"]["schema"]["default"] == 120
    assert set(behaviour["placeholders"]) >= {"host", "login", "password", *CONN_FIELDS}


def test_airflow_reads_the_connection_form_from_provider_info():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-whatsinfinity" in manager.providers
    widgets = manager.connection_form_widgets
    timeout = widgets["extra__whatsinfinity__timeout"]
    if isinstance(timeout.field, dict):  # Airflow 3.2+: from conn-fields
        assert timeout.field["schema"]["title"] == "Timeout (seconds)"
        assert timeout.field["value"] == 30
    else:  # before: the hook's wtforms field, of a class the providers manager accepts
        assert type(timeout.field).__name__ == "UnboundField"
        assert timeout.field.field_class.__name__ == "StringField"
        assert timeout.field.args[0] == "Timeout (seconds)"
        assert timeout.field.kwargs["default"] == "30"
    behaviour = manager.field_behaviours["whatsinfinity"]
    assert behaviour["relabeling"]["password"] == "API key"
    hook_info = manager.hooks["whatsinfinity"]
    assert hook_info is not None
    assert hook_info.hook_name == "WhatsInfinity"


def test_pre_3_2_form_methods_agree_with_provider_info():
    widgets = WhatsInfinityHook.get_connection_form_widgets()
    assert set(widgets) == set(CONN_FIELDS)
    for name, field in widgets.items():
        assert field.args[0] == CONN_FIELDS[name]["label"]
        assert float(field.kwargs["default"]) == CONN_FIELDS[name]["schema"]["default"]
    behaviour = WhatsInfinityHook.get_ui_field_behaviour()
    assert behaviour == {
        "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }
