"""
What an attempt came back with, read: the call's result, or the error that says what happened.

An answer counts as success only in the API's documented shape; anything else becomes the
:class:`~airflow_provider_whatsinfinity.exceptions.WhatsInfinityError` whose type tells the retry
engine (:mod:`airflow_provider_whatsinfinity.retries`) what it allows. No error shows the API key or
a URL's user name and password.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

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
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.models import SessionStatus, text_or_none
from airflow_provider_whatsinfinity.retries import NEVER_SENT
from airflow_provider_whatsinfinity.validation import redact_url

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.api import _Call
    from airflow_provider_whatsinfinity.retries import Outcome

T = TypeVar("T")

ERRORS_BY_STATUS: dict[int, type[WhatsInfinityError]] = {
    400: ValidationError,
    413: ValidationError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: SessionNotFoundError,
    409: ConflictError,
    422: NotOnWhatsAppError,
}


@dataclass(frozen=True)
class _Answer:
    """A successful answer: its ``data`` (or raw bytes for the QR PNG) and its requestId."""

    data: dict[str, Any]
    request_id: str | None
    content: bytes = b""


def _result_of(call: _Call[T], outcome: Outcome, api_key: str, shown_url: str) -> T:
    """
    Return the call's result from what an attempt came back with, or raise the error it means.

    :param call: The call that was attempted.
    :param outcome: The answer, or what the request raised.
    :param api_key: The key the request carried; never shown in an error.
    :param shown_url: The base URL as errors show it.
    """
    if isinstance(outcome, httpx.Response):
        return call.parse(_answer(call, outcome, api_key))
    # Chained for the traceback, but not an h11 refusal: its text quotes the header (the key).
    cause = None if isinstance(outcome, httpx.LocalProtocolError) else outcome
    raise _transport_error(call, outcome, api_key, shown_url) from cause


def _answer(call: _Call[Any], response: httpx.Response, api_key: str = "") -> _Answer:
    request_id = response.headers.get("x-request-id")
    content_type = response.headers.get("content-type", "")
    if response.is_success and call.name == "qr" and content_type.startswith("image/"):
        return _Answer({}, request_id, response.content)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        request_id = str(body.get("requestId") or request_id or "") or None
    # Success is the documented shape only: {"success": true, "data": ...}. A proxy's or a
    # captive portal's 200 ("{}", an HTML page, {"status": "ok"}) proves nothing was delivered.
    if response.is_success and isinstance(body, dict) and body.get("success") is True:
        data = body.get("data")
        answer = _Answer(data if isinstance(data, dict) else {"items": data}, request_id)
        if call.path != "/send" or isinstance(answer.data.get("queued"), bool):
            return answer
    raise _error_for(call, response, body if isinstance(body, dict) else None, request_id, api_key)


def _error_for(
    call: _Call[Any],
    response: httpx.Response,
    body: dict[str, Any] | None,
    request_id: str | None,
    api_key: str = "",
) -> WhatsInfinityError:
    status = response.status_code

    def hidden(text: str | None) -> str | None:
        # A gateway may quote the key it refused ("API key '...' is revoked"): never in an error.
        return text.replace(api_key, "***") if text and api_key else text

    details: str | None
    if body is None or (response.is_success and body.get("success") is not False):
        snippet = (hidden(response.text) or "")[:200].strip() or "an empty body"  # hidden, then cut
        error_text, details = None, f"unreadable answer: {snippet}"
    else:
        error_text = hidden(text_or_none(body.get("error")))
        details = hidden(text_or_none(body.get("details")))
    said = ": ".join(part for part in (error_text, details) if part) or hidden(response.reason_phrase) or ""
    message = f"{call.name} failed with HTTP {status}: {said}"
    request_id = hidden(request_id)
    fields: dict[str, Any] = {
        "status_code": status,
        "error": error_text,
        "details": details,
        "request_id": request_id,
    }
    if response.is_success:
        # 2xx, but not an answer we can read: for a change, we cannot tell whether it happened.
        cls: type[WhatsInfinityError] = OutcomeUnknownError if call.kind == "change" else ServerError
        return cls(f"{call.name}: the server answered HTTP {status} with {details}", **fields)
    if status == 429:
        return RateLimitedError(message, retry_after=_retry_after(body, response), **fields)
    if status == 503 and call.path == "/send" and _is_queue_full(body):
        # The API's own answer: the queue is full and the message was not taken.
        return QueueFullError(message, **fields)
    if status >= 500:
        if call.kind == "change":
            # A proxy's 502/503/504 can come after the service acted: never retried.
            return OutcomeUnknownError(
                f"{message}. The call may or may not have taken effect, so it was not retried",
                **fields,
            )
        return ServerError(message, **fields)
    cls = ERRORS_BY_STATUS.get(status, WhatsInfinityError)
    return cls(message, **fields)


def _transport_error(
    call: _Call[Any], exc: Exception | None, api_key: str, shown_url: str
) -> WhatsInfinityError:
    """Map what the network layer raised for a request that was handed to it."""
    # Whatever the transport said, the key never goes into an error: some errors quote headers.
    reason = _reason(exc).replace(api_key, "***")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ValidationError(f"{call.name}: invalid base URL {shown_url!r}: {reason}")
    if isinstance(exc, httpx.LocalProtocolError):
        # h11 refused to write the request (an illegal header value, say): nothing left. Its text
        # quotes the header, which may be the key, so only the type is shown.
        return ValidationError(
            f"{call.name}: the HTTP library refused to send the request (LocalProtocolError): a header "
            "or the URL holds characters HTTP does not allow; check the connection's API key and "
            "base URL; nothing was sent"
        )
    if isinstance(exc, NEVER_SENT):
        return ServiceUnreachableError(f"{call.name}: could not reach {shown_url}: {reason}")
    if call.kind == "read":
        return ServiceUnreachableError(f"{call.name}: no answer from {shown_url}: {reason}")
    return OutcomeUnknownError(
        f"{call.name}: the request was sent but its answer was lost ({reason}); it may or may not have "
        "taken effect, so it was not retried"
    )


def _is_queue_full(body: dict[str, Any] | None) -> bool:
    """Whether an answer's body is the API's own queue-full error: its error shape, naming the queue."""
    if body is None or body.get("success") is not False or not isinstance(body.get("error"), str):
        return False
    said = f"{body.get('error')} {body.get('details') or ''}".lower()
    return "queue" in said


def _reason(exc: BaseException | None) -> str:
    """Name what a transport raised, its text redacted of any URL's user name and password."""
    if exc is None:
        return "no answer"
    text = str(exc)
    if isinstance(exc, httpx.HTTPError) and text:
        text = " ".join(redact_url(word) if "@" in word else word for word in text.split(" "))
        return f"{type(exc).__name__}: {text[:300]}"
    # Anything else (a RuntimeError from a closed event loop, say) is named by its type only.
    return type(exc).__name__


def _retry_after(body: dict[str, Any] | None, response: httpx.Response) -> float | None:
    for value in ((body or {}).get("retryAfter"), response.headers.get("retry-after")):
        try:
            if value is not None and not isinstance(value, bool) and math.isfinite(float(value)):
                return max(float(value), 0.0)
        except (TypeError, ValueError):
            continue
    return None


def _pairing_code(answer: _Answer) -> str:
    code = answer.data.get("pairingCode") or answer.data.get("code")
    if code is None or str(code).strip() == "":
        raise ServerError("pairing-code answered without a pairing code", request_id=answer.request_id)
    return str(code).strip()


def _session_list(answer: _Answer) -> list[SessionStatus]:
    data = answer.data
    items = data.get("sessions", data.get("items", []))
    if not isinstance(items, list):
        raise ServerError("all-sessions answered without a list of sessions", request_id=answer.request_id)
    return [
        SessionStatus.from_api(str(item.get("sessionId") or item.get("id") or ""), item)
        for item in items
        if isinstance(item, dict)
    ]
