"""
The one home of the WhatsInfinity API's facts and of our defaults.

The facts of the API doc (limits, session states, media types) are what the client checks before
sending and the emulator enforces; the defaults (connection type and ID, timeouts) are what the
hook, operators, sensor, notifier and the connection form share. Kept in one place so that every
side reads the same values; nothing here does I/O or imports Airflow.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal, get_args
from urllib.parse import unquote, urlsplit

DEFAULT_BASE_URL = "http://api.whatsinfinity.com"

# Our defaults ----------------------------------------------------------------------------------

#: The Airflow connection type.
CONN_TYPE = "whatsinfinity"
#: The connection every hook, operator, sensor and notifier uses unless told otherwise.
DEFAULT_CONN_ID = "whatsinfinity_default"
#: Seconds allowed for each request.
DEFAULT_TIMEOUT = 30.0
#: Most seconds one call spends waiting out 429s.
DEFAULT_MAX_RATE_LIMIT_WAIT = 120.0

# The API's facts -------------------------------------------------------------------------------

#: A session's states, from creation to messaging (the doc's "Session Lifecycle").
SessionState = Literal["qr", "pairing", "connecting", "active", "disconnected", "disabled"]
SESSION_STATES: tuple[SessionState, ...] = get_args(SessionState)

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
PHONE_PATTERN = re.compile(r"[0-9]{7,15}")
MIN_API_KEY_LENGTH = 16
MAX_API_KEY_LENGTH = 256
#: In UTF-16 code units, as the service (a JavaScript service: ``message.length``) counts them.
MAX_MESSAGE_LENGTH = 65000
#: The API doc states no limit on a media URL. Ours only keeps a runaway value (a whole file pasted
#: into the field) from being sent; presigned URLs with session tokens stay far below it.
MAX_URL_LENGTH = 32768
MAX_FILE_NAME_LENGTH = 255

#: The explicit media kinds a send may name.
MEDIA_KINDS = ("image", "video", "audio", "document")
#: What a media send's ``type`` may be: ``media`` (detected from the URL's extension) or a kind.
MEDIA_TYPES = ("media", *MEDIA_KINDS)
#: Every ``type`` of ``POST /send``.
SEND_TYPES = ("text", *MEDIA_TYPES)

# Extension -> (kind, mimetype). Our own table: the stdlib's mimetypes reads /etc/mime.types and so
# answers differently from one machine to the next.
MEDIA_EXTENSIONS: dict[str, tuple[str, str]] = {
    "jpg": ("image", "image/jpeg"),
    "jpeg": ("image", "image/jpeg"),
    "png": ("image", "image/png"),
    "gif": ("image", "image/gif"),
    "webp": ("image", "image/webp"),
    "mp4": ("video", "video/mp4"),
    "mp3": ("audio", "audio/mpeg"),
    "ogg": ("audio", "audio/ogg"),
    "opus": ("audio", "audio/opus"),
    "m4a": ("audio", "audio/mp4"),
    "pdf": ("document", "application/pdf"),
    "doc": ("document", "application/msword"),
    "docx": ("document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    "xls": ("document", "application/vnd.ms-excel"),
    "xlsx": ("document", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "ppt": ("document", "application/vnd.ms-powerpoint"),
    "pptx": ("document", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    "csv": ("document", "text/csv"),
    "txt": ("document", "text/plain"),
    "zip": ("document", "application/zip"),
}
DEFAULT_MIMETYPES = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "document": "application/octet-stream",
}


def detect_media(url: str) -> tuple[str, str] | None:
    """
    Return the media kind and mimetype that a URL's path extension stands for.

    :param url: An http(s) URL.
    :return: ``(kind, mimetype)``, or ``None`` when the extension is not a known media type.
    """
    suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower().lstrip(".")
    return MEDIA_EXTENSIONS.get(suffix)


def text_length(text: str) -> int:
    """
    Return a text's length as the service counts it: UTF-16 code units, so an emoji counts 2.

    :param text: The text.
    """
    # A character above U+FFFF is a surrogate pair in UTF-16; everything else is one unit.
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def url_problem(url: str) -> str | None:
    """
    Return what makes a URL unusable as an http(s) media URL, or ``None`` when it is fine.

    :param url: The URL to check.
    """
    if len(url) > MAX_URL_LENGTH:
        return f"it is {len(url)} characters long, more than the {MAX_URL_LENGTH} accepted"
    if any(ch.isspace() for ch in url):
        return "it contains whitespace"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"it cannot be parsed ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "it is not an http(s) URL"
    if not host:
        return "it has no host"
    return None


def valid_http_url(url: str) -> bool:
    """Whether a URL is http(s) with a host and no whitespace. :param url: The URL to check."""
    return url_problem(url) is None
