"""
Checks made before any request, so that bad input fails fast with a message that names the problem.

Every function raises :class:`~airflow_provider_whatsinfinity.exceptions.ValidationError` (with
``status_code`` ``None``) and makes no request at all.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx

from airflow_provider_whatsinfinity.exceptions import ValidationError
from airflow_provider_whatsinfinity.spec import (
    DEFAULT_BASE_URL,
    MAX_API_KEY_LENGTH,
    MAX_FILE_NAME_LENGTH,
    MAX_MESSAGE_LENGTH,
    MEDIA_KINDS,
    MEDIA_TYPES,
    MIN_API_KEY_LENGTH,
    PHONE_PATTERN,
    SESSION_ID_PATTERN,
    detect_media,
    text_length,
    url_problem,
    valid_http_url,
)

# What people write around the digits of a phone number: a leading +, spaces, dashes, dots, brackets.
_PHONE_DECORATION = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"[0-9]+")
# A UTF-16 surrogate on its own is a valid Python str but cannot be encoded as UTF-8 (or sent as JSON).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def normalize_phone(number: str | int) -> str:
    """
    Return a phone number as the digits the API expects: country code and number, no ``+``.

    Accepts ``+``, spaces, dashes, dots and parentheses around the digits, as in
    ``+91 (999) 999-9999``, and strips them.

    :param number: The number as written by a person, or as an int.
    """
    if isinstance(number, bool) or not isinstance(number, (str, int)):
        raise ValidationError(f"Phone number must be a string of digits, got {type(number).__name__}")
    text = str(number).strip()
    digits = _PHONE_DECORATION.sub("", text.removeprefix("+"))
    if not digits:
        raise ValidationError(
            f"Invalid phone number {_shown(text)}: no digits; "
            "use the country code and number, such as 919999999999"
        )
    if not _DIGITS.fullmatch(digits):
        raise ValidationError(
            f"Invalid phone number {_shown(text)}: use digits with the country code, such as 919999999999; "
            "only a leading '+', spaces, dashes, dots and parentheses may surround them"
        )
    if not PHONE_PATTERN.fullmatch(digits):
        raise ValidationError(
            f"Invalid phone number {_shown(text)}: {len(digits)} digits, but a number with its country code "
            "has 7 to 15"
        )
    return digits


def check_session_id(session_id: Any) -> str:
    """
    Check a session ID: 1 to 64 letters, digits, ``-`` or ``_``.

    :param session_id: The session ID.
    """
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValidationError(
            f"Invalid session ID {_shown(session_id)}: use 1 to 64 letters, digits, '-' or '_'"
        )
    return session_id


def check_api_key(api_key: Any) -> str:
    """
    Check an API key without ever showing the key.

    It travels in the ``x-api-key`` header, so it must be printable ASCII with no space at either end
    (a space pasted with it would be refused by the HTTP library after the task had started sending).

    :param api_key: The API key.
    """
    if not isinstance(api_key, str) or not api_key:
        raise ValidationError("The API key is missing: set it as the connection's password")
    if api_key != api_key.strip():
        raise ValidationError(
            "Invalid API key: it starts or ends with whitespace (pasted with the key?); remove it"
        )
    if not MIN_API_KEY_LENGTH <= len(api_key) <= MAX_API_KEY_LENGTH:
        raise ValidationError(
            f"Invalid API key: it must be {MIN_API_KEY_LENGTH} to {MAX_API_KEY_LENGTH} characters, "
            f"this one has {len(api_key)}"
        )
    if not (api_key.isascii() and api_key.isprintable()):
        raise ValidationError(
            "Invalid API key: it must be printable ASCII characters (it is sent in an HTTP header); "
            "this one has a control or non-ASCII character"
        )
    return api_key


def check_encodable(text: str, name: str) -> str:
    """
    Check that text can be sent as UTF-8 JSON: no UTF-16 surrogate on its own.

    :param text: The text.
    :param name: What it is, for the error message.
    """
    if (lone := _LONE_SURROGATE.search(text)) is not None:
        raise ValidationError(
            f"{name} cannot be sent: it holds a lone UTF-16 surrogate (U+{ord(lone.group()):04X}) at "
            f"position {lone.start()}, which is not valid text; it usually comes from text decoded with "
            "errors='surrogateescape' or a broken emoji"
        )
    return text


def check_number(value: Any, name: str, *, positive: bool = False) -> float:
    """
    Return a setting as a finite number of at least 0 (above 0 when ``positive``).

    :param value: The setting, a number or its text.
    :param name: The setting's name, for the error message.
    :param positive: Refuse 0 as well.
    """
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (positive and number == 0):
        wanted = "a positive" if positive else "a non-negative"
        raise ValidationError(
            f"{name} must be {wanted} number, got {_shown(value)} (finite: not NaN or infinity)"
        )
    return number


def check_message(message: Any) -> str:
    """
    Check a text message: non-empty, at most 65000 characters as the service counts them.

    The service counts UTF-16 code units, as JavaScript does: an emoji counts 2.

    :param message: The message.
    """
    if not isinstance(message, str):
        raise ValidationError(f"Message must be a string, got {type(message).__name__}")
    if not message.strip():
        raise ValidationError("Message is empty: a text message needs some text")
    check_encodable(message, "Message")
    if (length := text_length(message)) > MAX_MESSAGE_LENGTH:
        raise ValidationError(
            f"Message too long: {length} characters as WhatsInfinity counts them (an emoji counts 2), "
            f"at most {MAX_MESSAGE_LENGTH} are allowed; split it or send it as a document"
        )
    return message


def check_url(url: Any) -> str:
    """
    Check a media URL: http or https, with a host.

    :param url: The URL.
    """
    if not isinstance(url, str):
        raise ValidationError(f"Media URL must be a string, got {type(url).__name__}")
    url = url.strip()
    if (problem := url_problem(url)) is not None:
        raise ValidationError(
            f"Invalid URL {_shown(redact_url(url), 100)}: {problem}; media must be at a publicly "
            "accessible http(s) URL with a host"
        )
    return check_encodable(url, "Media URL")


def resolve_media_type(url: str, media_type: Any) -> str:
    """
    Return the explicit media kind to send: ``image``, ``video``, ``audio`` or ``document``.

    :param url: The media's URL, already checked.
    :param media_type: ``media`` to detect the kind from the URL's extension, or an explicit kind.
    """
    kind = media_type.strip().lower() if isinstance(media_type, str) else media_type
    if kind not in MEDIA_TYPES:
        raise ValidationError(f"Invalid media type {_shown(media_type)}: use one of {', '.join(MEDIA_TYPES)}")
    if kind != "media":
        return str(kind)
    detected = detect_media(url)
    if detected is None:
        raise ValidationError(
            f"Cannot detect the media type of {_shown(url, 100)} from its extension: pass media_type as one "
            f"of {', '.join(MEDIA_KINDS)}"
        )
    return detected[0]


def check_optional_text(value: Any, name: str, max_length: int = MAX_MESSAGE_LENGTH) -> str | None:
    """
    Check an optional string such as a caption or a file name.

    :param value: The value, or ``None``.
    :param name: What it is, for the error message.
    :param max_length: Most characters allowed.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, got {type(value).__name__}")
    check_encodable(value, name)
    length = text_length(value)
    if not 1 <= length <= max_length:
        raise ValidationError(f"{name} must be 1 to {max_length} characters, got {length}")
    return value


def check_file_name(file_name: Any) -> str | None:
    """Check an optional document file name. :param file_name: The name, or ``None``."""
    return check_optional_text(file_name, "File name", MAX_FILE_NAME_LENGTH)


def normalize_base_url(base_url: str | None) -> str:
    """
    Return the API's base URL without a trailing slash; empty means the public service.

    :param base_url: A full URL such as ``https://api.whatsinfinity.com``, or a bare ``host:port``
        (taken as http, like the public service).
    """
    url = (base_url or "").strip() or DEFAULT_BASE_URL
    if "://" not in url:
        url = f"http://{url}"
    shown = _shown(redact_url(url), 100)
    invalid = ValidationError(f"Invalid base URL {shown}: use an http(s) URL such as {DEFAULT_BASE_URL}")
    if not valid_http_url(url):
        raise invalid
    if "?" in url or "#" in url:
        # Every call's path is appended to the base URL: behind a query it would be lost (POST /).
        raise ValidationError(
            f"Invalid base URL {shown}: it has a query or fragment ('?' or '#'); give only the scheme, "
            "host, port and path prefix"
        )
    try:
        # httpx and the resolver IDNA-encode the host, which urlsplit never checks.
        host = httpx.URL(url).host
        if ":" not in host:  # an IPv6 literal needs no encoding
            host.encode("idna")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise invalid from None
    return url.rstrip("/")


def redact_url(url: str) -> str:
    """
    Return a URL fit to show: any user name and password in it replaced by ``***``.

    Done on the raw text, not on a parsed URL: a password with an unencoded ``/``, ``?`` or ``#``
    would fool a parser into showing it. Everything between ``://`` and the last ``@`` goes (a path
    with an ``@`` in it is hidden too, which is safe).

    :param url: The URL, as given.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
