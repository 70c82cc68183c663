"""Property-based tests: phone normalization, and the client's checks agreeing with the emulator's."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_whatsinfinity.client import WhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import ValidationError
from airflow_provider_whatsinfinity.validation import normalize_phone
from tests.common import KEY, PHONE, SESSION

if TYPE_CHECKING:
    import httpx

DIGITS = st.text(alphabet=string.digits, min_size=7, max_size=15)
DECORATION = st.sampled_from([" ", "-", ".", "(", ")", "  ", " - ", "\t"])
NO_SURROGATES = st.characters(exclude_categories=["Cs"])
SHARED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def decorated(draw: st.DrawFn) -> tuple[str, str]:
    """A valid number and the same number as a person might write it."""
    digits = draw(DIGITS)
    written = "+" if draw(st.booleans()) else ""
    for digit in digits:
        written += digit + (draw(DECORATION) if draw(st.booleans()) else "")
    return digits, draw(st.sampled_from(["", " "])) + written


@given(decorated())
def test_decorated_numbers_normalize_to_their_digits(case):
    digits, written = case
    assert normalize_phone(written) == digits


@given(st.one_of(st.text(alphabet=NO_SURROGATES, max_size=30), st.integers(), st.floats(), st.none()))
def test_anything_normalizes_to_7_to_15_digits_or_raises_validation_error(value):
    try:
        digits: str | ValidationError = normalize_phone(value)
    except ValidationError as error:
        digits = error
    if isinstance(digits, ValidationError):
        assert digits.status_code is None
        assert str(digits)
    else:
        assert digits.isascii()
        assert digits.isdigit()
        assert 7 <= len(digits) <= 15


@given(DIGITS, st.text(alphabet=string.ascii_letters + "/*#@_,;:", min_size=1, max_size=3))
def test_any_foreign_character_is_refused(digits, junk):
    with pytest.raises(ValidationError):
        normalize_phone(digits[:4] + junk + digits[4:])


def emulator_accepts(api: httpx.Client, body: dict[str, object]) -> bool:
    answer = api.post("/send", json={"sessionId": SESSION, "to": PHONE, "dryRun": True, **body})
    assert answer.status_code in (200, 400), answer.text
    return answer.status_code == 200


@settings(SHARED)
@given(
    st.one_of(
        st.text(alphabet=NO_SURROGATES, max_size=50),
        st.sampled_from(["", " ", "\n\t", "x" * 65000, "x" * 65001, "é" * 65000]),
    )
)
def test_client_and_emulator_agree_on_messages(whatsinfinity_emulator, api, message):
    if not whatsinfinity_emulator.requests("/create-session"):
        whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    client = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url)
    try:
        client.send_text(PHONE, message, dry_run=True)
        client_accepts = True
    except ValidationError:
        client_accepts = False
    assert client_accepts == emulator_accepts(api, {"type": "text", "message": message})
    assert whatsinfinity_emulator.outbox() == []


URL_PARTS = st.tuples(
    st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "", "https:/", "https:///"]),
    st.sampled_from(["files.example.com", "127.0.0.1:8080", "[::1]", "exa mple.com", "", "a.b:99999"]),
    st.sampled_from(["/report", "/a/b/photo", "/", "", "/x%20y"]),
    st.sampled_from([".pdf", ".PDF", ".jpg", ".mp4", ".ogg", ".rar", "", ".docx", ".webp", ".pdf?sig=1"]),
)


@settings(SHARED)
@given(URL_PARTS, st.sampled_from(["media", "document", "image"]))
def test_client_and_emulator_agree_on_media_urls(whatsinfinity_emulator, api, parts, media_type):
    if not whatsinfinity_emulator.requests("/create-session"):
        whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    url = "".join(parts)
    client = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url)
    try:
        client.send_media(PHONE, url, media_type=media_type, dry_run=True)
        client_accepts = True
    except ValidationError:
        client_accepts = False
    assert client_accepts == emulator_accepts(api, {"type": media_type, "url": url})
