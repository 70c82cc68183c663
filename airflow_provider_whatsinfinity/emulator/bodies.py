"""
Reading and checking request bodies: strict JSON objects, typed fields, and ``/send`` messages.

Bodies are read and checked by hand rather than through pydantic models, so that every bad input gets
the documented error shape with a message that names the field and what is wrong with it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from airflow_provider_whatsinfinity.emulator.model import ApiError, Message, bad_request, shown
from airflow_provider_whatsinfinity.spec import (
    DEFAULT_MIMETYPES,
    MAX_FILE_NAME_LENGTH,
    MAX_MESSAGE_LENGTH,
    MEDIA_KINDS,
    PHONE_PATTERN,
    SEND_TYPES,
    SESSION_ID_PATTERN,
    detect_media,
    text_length,
    url_problem,
)

if TYPE_CHECKING:
    from fastapi import Request

    from airflow_provider_whatsinfinity.emulator.model import Session

#: A character that is half of a UTF-16 surrogate pair: valid in JSON strings, but not text.
SURROGATE = re.compile(r"[\ud800-\udfff]")
#: The ``\u`` escape of a surrogate in raw JSON: only bodies with one are searched for lone ones.
ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
JSON_TYPE_NAMES = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


def _type_name(value: object) -> str:
    return "null" if value is None else JSON_TYPE_NAMES.get(type(value), type(value).__name__)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """
    Read a request body that must be a JSON object of at most ``limit`` bytes.

    :param request: The request.
    :param limit: Largest body accepted.
    """
    too_large = ApiError(413, "Payload Too Large", f"Request body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(
            499, "Client Closed Request", "The client went away before sending its whole body"
        ) from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("Request body is empty: send a JSON object with the required fields")
    try:
        # Strict JSON as a JavaScript service parses it: UTF-8 only, and no NaN or Infinity.
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("Request body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"Malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise bad_request(f"Malformed JSON body: {exc}") from None
    except RecursionError:
        raise bad_request("Malformed JSON body: arrays or objects nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request(f"Request body must be a JSON object, got {_type_name(body)}")
    # UTF-8 cannot carry a lone surrogate, so only a \uXXXX escape can bring one in.
    if ESCAPED_SURROGATE.search(raw):
        where = lone_surrogate_in(body)
        if where is not None:
            raise bad_request(
                f"{where} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape): "
                "that is not text, and cannot be stored or sent"
            )
    return body


def lone_surrogate_in(body: dict[str, Any]) -> str | None:
    """
    Return where a parsed body has a string with a lone UTF-16 surrogate in it, or ``None``.

    Such a string is valid JSON but not Unicode text: it can be neither encoded as UTF-8 for an answer
    nor kept in the state file. A pair of escapes that makes one character (an emoji) is fine.

    :param body: The parsed request body.
    :return: Where, such as ``Field 'message'`` or ``Field 'extra[1].x'``.
    """
    # A loop, not recursion: the body may nest as deep as the JSON parser allowed.
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if SURROGATE.search(value):
                return f"Field {path!r}"
        elif isinstance(value, dict):
            for key, item in value.items():
                if SURROGATE.search(key):
                    return f"A member name in {f'field {path!r}' if path else 'the body'}"
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """
    Return a string member of a request body.

    :param body: The request body.
    :param name: The member's name.
    :param required: Whether a missing or null member is an error.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"Missing required field: {name}")
        return None
    if not isinstance(value, str):
        raise bad_request(f"Field '{name}' must be a string, got {_type_name(value)}")
    return value


def bool_field(body: dict[str, Any], name: str) -> bool:
    """Return an optional boolean member, ``False`` when absent. :param body: Body. :param name: Member."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"Field '{name}' must be a boolean (true or false), got {_type_name(value)}")
    return value


def session_id_field(value: Any) -> str:
    """Check a session ID from a body or path. :param value: The session ID as sent."""
    if value is None:
        raise bad_request("Missing required field: sessionId")
    if not isinstance(value, str):
        raise bad_request(f"Field 'sessionId' must be a string, got {_type_name(value)}")
    if not SESSION_ID_PATTERN.fullmatch(value):
        raise ApiError(
            400,
            "Invalid sessionId",
            f"sessionId {shown(value)} must be 1 to 64 letters, digits, '-' or '_'",
        )
    return value


def phone_field(body: dict[str, Any], name: str) -> str:
    """Check a phone number member: 7 to 15 digits. :param body: Body. :param name: Member."""
    value = string_field(body, name)
    assert value is not None
    if not PHONE_PATTERN.fullmatch(value):
        raise bad_request(
            f"Invalid phone number: '{name}' must be 7 to 15 digits with the country code and no '+' "
            f"(got {shown(value)})"
        )
    return value


def parse_message(session: Session, body: dict[str, Any]) -> Message:
    """
    Check a ``/send`` body and turn it into a message.

    :param session: The sending session.
    :param body: The request body.
    """
    to = phone_field(body, "to")
    send_type = string_field(body, "type")
    if send_type not in SEND_TYPES:
        raise bad_request(f"Invalid type {shown(send_type)}: use one of {', '.join(SEND_TYPES)}")
    typing = bool_field(body, "typing")
    bool_field(body, "dryRun")
    if send_type == "text":
        text = string_field(body, "message")
        assert text is not None
        if not text.strip():
            raise bad_request("Field 'message' must not be empty")
        length = text_length(text)
        if length > MAX_MESSAGE_LENGTH:
            raise bad_request(
                f"Message too long: {length} characters (UTF-16 code units: an emoji counts 2); "
                f"text messages must be at most {MAX_MESSAGE_LENGTH}"
            )
        return Message(
            message_id=_message_id(),
            session_id=session.session_id,
            to=to,
            type="text",
            message=text,
            typing=typing,
        )
    url = string_field(body, "url")
    assert url is not None
    problem = url_problem(url)
    if problem is not None:
        raise bad_request(
            f"Invalid URL format: {shown(url, 80)}: {problem}; use a publicly accessible http(s) URL"
        )
    caption = string_field(body, "caption", required=False)
    file_name = string_field(body, "fileName", required=False)
    if file_name is not None and not 1 <= len(file_name) <= MAX_FILE_NAME_LENGTH:
        raise bad_request(f"Field 'fileName' must be 1 to {MAX_FILE_NAME_LENGTH} characters")
    detected = detect_media(url)
    if send_type == "media":
        if detected is None:
            raise bad_request(
                f"Cannot detect the media type of {shown(url, 80)} from its extension; "
                f"set type to one of {', '.join(MEDIA_KINDS)}"
            )
        kind, mimetype = detected
    else:
        kind = send_type
        mimetype = detected[1] if detected and detected[0] == kind else DEFAULT_MIMETYPES[kind]
    if kind == "document" and file_name is None:
        file_name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "document"
    return Message(
        message_id=_message_id(),
        session_id=session.session_id,
        to=to,
        type=kind,
        url=url,
        caption=caption if kind != "audio" else None,
        file_name=file_name if kind == "document" else None,
        mimetype=mimetype,
        typing=typing,
    )


def dry_run_payload(message: Message) -> dict[str, Any]:
    """Return the message as the service would hand it to WhatsApp. :param message: The message."""
    if message.type == "text":
        return {"text": message.message}
    payload: dict[str, Any] = {message.type: {"url": message.url}, "mimetype": message.mimetype}
    if message.file_name is not None:
        payload["fileName"] = message.file_name
    if message.caption is not None:
        payload["caption"] = message.caption
    return payload


def _message_id() -> str:
    # Shaped like the IDs WhatsApp Web gives outgoing messages.
    return "3EB0" + uuid.uuid4().hex[:18].upper()
