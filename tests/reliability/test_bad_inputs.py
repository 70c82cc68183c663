"""
Bad input through the operators: a clear, specific error each, no crash, nothing in the outbox.

The raw-HTTP side of the same promise (malformed JSON, wrong types, oversized bodies, headers, paths)
is tests/emulator/test_bad_input.py's table; here every row goes through an operator as a DAG author
would write it.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.operators.whatsinfinity import (
    WhatsInfinityPairingCodeOperator,
    WhatsInfinityRestartSessionOperator,
    WhatsInfinitySendMediaOperator,
    WhatsInfinitySendTextOperator,
)
from tests.common import KEY, PHONE, SESSION, connection_json

URL = "https://files.example.com/report.pdf"


def text(**kwargs: Any) -> WhatsInfinitySendTextOperator:
    return WhatsInfinitySendTextOperator(task_id="t", **{"to": PHONE, "message": "hi", **kwargs})


def media(**kwargs: Any) -> WhatsInfinitySendMediaOperator:
    return WhatsInfinitySendMediaOperator(task_id="m", **{"to": PHONE, "url": URL, **kwargs})


# (name, operator factory, what the error must say)
ROWS: list[tuple[str, Any, str]] = [
    # Numbers
    ("number too short", lambda: text(to="123456"), "6 digits"),
    ("number too long", lambda: text(to="1234567890123456"), "16 digits"),
    ("number with letters", lambda: text(to="91999999999a"), "Invalid phone number"),
    ("number with a plus inside", lambda: text(to="91+9999999999"), "only a leading '+'"),
    ("number with two pluses", lambda: text(to="++919999999999"), "only a leading '+'"),
    ("number with a slash", lambda: text(to="91/9999999999"), "Invalid phone number"),
    ("number with an e-mail", lambda: text(to="ops@example.com"), "Invalid phone number"),
    ("number of Arabic-Indic digits", lambda: text(to="٩١٩٩٩٩٩٩٩٩٩"), "Invalid phone number"),
    ("empty number", lambda: text(to=""), "no digits"),
    ("only punctuation", lambda: text(to="+ ( ) -"), "no digits"),
    ("number as a float", lambda: text(to=919999999999.0), "got float"),
    ("number as a bool", lambda: text(to=True), "got bool"),
    ("number as None", lambda: text(to=None), "got NoneType"),
    ("empty list of numbers", lambda: text(to=[]), "'to' is empty"),
    ("one bad number in a list", lambda: text(to=[PHONE, "12"]), "2 digits"),
    ("number as a dict", lambda: text(to={"to": PHONE}), "got dict"),
    # Messages
    ("empty message", lambda: text(message=""), "Message is empty"),
    ("blank message", lambda: text(message=" \n\t "), "Message is empty"),
    ("message too long", lambda: text(message="x" * 65001), "Message too long: 65001"),
    ("message as a number", lambda: text(message=42), "Message must be a string"),
    ("message as a list", lambda: text(message=["hi"]), "Message must be a string"),
    ("message as None", lambda: text(message=None), "Message must be a string"),
    # URLs
    ("ftp url", lambda: media(url="ftp://files.example.com/a.pdf"), "neither an http(s) URL"),
    ("url without host", lambda: media(url="https:///a.pdf"), "Invalid URL"),
    ("url with a space", lambda: media(url="https://files.example.com/a b.pdf"), "Invalid URL"),
    ("url with a bad port", lambda: media(url="https://files.example.com:99999/a.pdf"), "Invalid URL"),
    ("javascript url", lambda: media(url="javascript:alert(1)"), "neither an http(s) URL"),
    ("local path", lambda: media(url="/tmp/report.pdf"), "neither an http(s) URL"),
    ("file url", lambda: media(url="file:///tmp/report.pdf"), "neither an http(s) URL"),
    # The API doc states no URL limit; ours is generous, and its error says it is about length.
    (
        "url too long",
        lambda: media(url="https://files.example.com/" + "a" * 40000 + ".pdf"),
        "characters long",
    ),
    (
        "unknown extension",
        lambda: media(url="https://files.example.com/a.rar"),
        "Cannot detect the media type",
    ),
    ("no extension", lambda: media(url="https://files.example.com/download"), "Cannot detect the media type"),
    # Types and other fields
    ("media type pdf", lambda: media(media_type="pdf"), "Invalid media type 'pdf'"),
    ("media type sticker", lambda: media(media_type="sticker"), "Invalid media type"),
    ("media type as a number", lambda: media(media_type=3), "Invalid media type"),
    ("caption as a number", lambda: media(caption=5), "Caption must be a string"),
    ("file name too long", lambda: media(file_name="a" * 256), "File name must be 1 to 255"),
    ("typing not a bool", lambda: text(typing="maybe"), "typing must be true or false"),
    ("dry_run not a bool", lambda: text(dry_run="perhaps"), "dry_run must be true or false"),
    (
        "wipe not a bool",
        lambda: WhatsInfinityRestartSessionOperator(task_id="r", wipe="soon"),
        "wipe must be",
    ),
    ("pairing phone bad", lambda: WhatsInfinityPairingCodeOperator(task_id="p", phone_number="x"), "'x'"),
]

# Connections a DAG author gets wrong: session IDs and keys.
BAD_CONNECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("session id with a space", {"login": "my session"}, "Invalid session ID"),
    ("session id with a slash", {"login": "my/session"}, "Invalid session ID"),
    ("session id too long", {"login": "s" * 65}, "Invalid session ID"),
    ("session id missing", {"login": ""}, "has no Session ID"),
    ("session id with unicode", {"login": "séssion"}, "Invalid session ID"),
    ("key too short", {"password": "short-key"}, "16 to 256"),
    ("key missing", {"password": ""}, "has no API key"),
    ("key with a newline", {"password": "key-0123456789\nabcdef"}, "printable"),
    ("timeout not a number", {"extra": {"timeout": "soon"}}, "extra 'timeout'"),
    ("base url not http", {"host": "ftp://api.whatsinfinity.com"}, "Invalid base URL"),
]


def test_the_table_is_big_enough():
    assert len(ROWS) + len(BAD_CONNECTIONS) >= 40


@pytest.mark.parametrize(("factory", "hint"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_operator_input(hook, linked, factory, hint):
    before = len(linked.requests())
    with pytest.raises(AirflowFailException) as raised:
        factory().execute({})
    assert hint in str(raised.value)
    assert linked.outbox() == []
    assert len(linked.requests()) == before  # caught before any request
    assert linked.faults() == []


@pytest.mark.parametrize(
    ("connection", "hint"), [r[1:] for r in BAD_CONNECTIONS], ids=[r[0] for r in BAD_CONNECTIONS]
)
def test_bad_connection(linked, monkeypatch, connection, hint):
    import json

    value = json.loads(connection_json(linked.url))
    value.update(connection)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", json.dumps(value))
    before = len(linked.requests())
    with pytest.raises(AirflowFailException) as raised:
        text().execute({})
    assert hint in str(raised.value)
    assert KEY not in str(raised.value)
    assert linked.outbox() == []
    assert len(linked.requests()) == before


def test_server_side_refusals_through_the_operator(hook, linked):
    linked.mark_unregistered("15550001111")
    with pytest.raises(AirflowFailException, match="Number not registered on WhatsApp"):
        text(to="15550001111").execute({})
    linked.disable(SESSION)
    with pytest.raises(AirflowFailException, match="disabled"):
        text().execute({})
    assert linked.outbox() == []
