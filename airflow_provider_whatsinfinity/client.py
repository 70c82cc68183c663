"""
A client for the WhatsInfinity API on httpx, with no Airflow in it.

:class:`WhatsInfinityClient` and :class:`AsyncWhatsInfinityClient` share everything but the I/O:
each API call is described once (:class:`_Call`), its answer parsed once, and its retries decided
once, in a generator (:meth:`_ClientBase._attempts`) that asks its driver to send a request or to
sleep. The sync driver uses ``httpx.Client`` and ``time.sleep``, the async one ``httpx.AsyncClient``
and ``asyncio.sleep``.

Retries never send a message twice:

- 429: wait ``retryAfter`` (plus a little jitter) while the total wait stays within
  ``max_rate_limit_wait``, then raise :class:`RateLimitedError`.
- A request that never left (connect error, connect or pool timeout, a proxy refusing the
  connection), the API's own "queue full" answer (a 503 to ``/send`` with the API's JSON error body),
  and on read-only calls (check-session, QR, all-sessions, dry runs) any 5xx or timeout: exponential
  backoff with full jitter, at most ``max_attempts`` attempts and no new attempt after
  ``retry_deadline`` seconds.
- A call that changes something and may have reached the server is never retried:
  :class:`OutcomeUnknownError`. That is a read timeout, a dropped connection, any 5xx other than the
  API's queue-full answer (a proxy's plain-text 503 can come after the service accepted the message),
  and any unexpected error once the request was handed to the network.
- A request that could not be built or was refused by the HTTP library before it left (a header or
  body it cannot encode) is a :class:`ValidationError`: nothing was sent.
- 400, 401, 404, 409, 422: never retried.

Errors and log lines never show the API key or a URL's user name and password.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from airflow_provider_whatsinfinity import __version__
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
from airflow_provider_whatsinfinity.models import SendResult, SessionStatus, text_or_none
from airflow_provider_whatsinfinity.validation import (
    check_api_key,
    check_file_name,
    check_message,
    check_number,
    check_optional_text,
    check_session_id,
    check_url,
    normalize_base_url,
    normalize_phone,
    redact_url,
    resolve_media_type,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Generator

    from typing_extensions import Self

log = logging.getLogger(__name__)

T = TypeVar("T")

# How a call may be retried: READ changes nothing; CHANGE (sends, session changes) must never run twice.
READ = "read"
CHANGE = "change"

# Errors where the request certainly never reached the server. A ProxyError is a proxy's refusal to
# open the tunnel; nothing was forwarded.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
USER_AGENT = f"airflow-provider-whatsinfinity/{__version__}"
HEADERS = {"user-agent": USER_AGENT, "accept": "application/json"}


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """
    Return the process's one SSL context for WhatsInfinity clients.

    Building one costs about 18 ms and 800 KiB; httpx builds a new one for every client unless it is
    given one. Every hook, trigger and notifier in a process shares this one instead.
    """
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class RetrySettings:
    """
    How hard a client tries before it gives up.

    :param max_attempts: Attempts for errors retried with backoff (not 429s, which have their own budget).
    :param backoff_base: First backoff ceiling in seconds; it doubles with each attempt.
    :param backoff_max: Largest backoff ceiling in seconds.
    :param retry_deadline: No backoff retry starts later than this many seconds after the first attempt.
    :param max_rate_limit_wait: Most seconds spent waiting out 429s in one call.
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_deadline: float = 60.0
    max_rate_limit_wait: float = 120.0

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValidationError(f"max_attempts must be a whole number of at least 1, got {attempts!r}")
        for name in ("backoff_base", "backoff_max", "retry_deadline", "max_rate_limit_wait"):
            check_number(getattr(self, name), name)


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One API call: the request, how it may be retried, and how its answer becomes a result."""

    name: str
    method: str
    path: str
    kind: str
    parse: Callable[[_Answer], T]
    json: dict[str, Any] | None = field(default=None, repr=False)  # create-session's carries the key
    authenticated: bool = True


@dataclass(frozen=True)
class SendCallbacks:
    """
    What a caller that keeps its own record of sends (a list send) learns as a send goes.

    :param before_send: Called right before each attempt's request goes on the wire, after everything
        that can fail locally (validation, building and encoding the request) has succeeded: from now
        on the message may go out.
    :param on_refused: Called when an attempt certainly did not take effect (429, the API's queue-full
        answer, a request that never left) and the client waits before trying again: if the wait is
        cut short (a task timeout), nothing was sent.
    """

    before_send: Callable[[], None] | None = None
    on_refused: Callable[[], None] | None = None


@dataclass(frozen=True)
class _Answer:
    """A successful answer: its ``data`` (or raw bytes for the QR PNG) and its requestId."""

    data: dict[str, Any]
    request_id: str | None
    content: bytes = b""


@dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclass
class _Budget:
    started: float = field(default_factory=time.monotonic)
    attempt: int = 0
    rate_limit_waited: float = 0.0


class _ClientBase:
    """
    What the sync and async clients share: settings, calls, answer parsing and retry decisions.

    :param session_id: The WhatsInfinity session ID.
    :param api_key: The session's API key. It is sent only in the ``x-api-key`` header and never shown.
    :param base_url: The API's base URL; empty means ``http://api.whatsinfinity.com``.
    :param timeout: Seconds allowed for each request (connecting takes at most 10 of them).
    :param retry: How hard to try before giving up.
    :param transport: An httpx transport to use instead of the network (for example a proxy).
    """

    def __init__(
        self,
        *,
        session_id: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetrySettings | None = None,
        transport: Any = None,
    ) -> None:
        self.session_id = check_session_id(session_id)
        self._api_key = check_api_key(api_key)
        self.base_url = normalize_base_url(base_url)
        self.timeout = check_number(timeout, "timeout", positive=True)
        self.retry = retry or RetrySettings()
        self._transport = transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.shown_url!r}, session_id={self.session_id!r})"

    @property
    def shown_url(self) -> str:
        """The base URL as errors and logs show it, without any user name or password."""
        return redact_url(self.base_url)

    def use_key(self, api_key: str) -> None:
        """
        Send ``api_key`` with every request from now on, as after a key rotation done elsewhere.

        :param api_key: The session's new API key.
        """
        self._api_key = check_api_key(api_key)

    def _client_options(self) -> dict[str, Any]:
        """Return what both httpx clients are built with: one SSL context for all, this client's timeout."""
        return {
            "headers": HEADERS,
            "verify": ssl_context(),
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            "transport": self._transport,
        }

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
        """
        Build a call's request, encoded and ready to go; nothing has left when this raises.

        The key goes with each request rather than with the pool: after ``rotate_key()`` the next request
        carries the new one.
        """
        try:
            return http.build_request(
                call.method,
                self.base_url + call.path,
                json=call.json,
                headers={"x-api-key": self._api_key} if call.authenticated else None,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ValidationError(
                f"{call.name}: invalid base URL {self.shown_url!r} ({type(exc).__name__}); nothing was sent"
            ) from None
        except Exception as exc:
            # Never the exception's text: it may quote the header value that could not be encoded.
            raise ValidationError(
                f"{call.name}: the request could not be encoded ({type(exc).__name__}); check the "
                "connection's API key and base URL and the message's text; nothing was sent"
            ) from None

    # The calls ---------------------------------------------------------------------------------

    @property
    def _quoted_session(self) -> str:
        return quote(self.session_id, safe="")

    def _create_session(self) -> _Call[SessionStatus]:
        body = {"sessionId": self.session_id, "apiKey": self._api_key}
        return _Call(
            "create-session", "POST", "/create-session", CHANGE, self._status, body, authenticated=False
        )

    def _get_qr(self) -> _Call[bytes]:
        return _Call("qr", "GET", f"/qr/{self._quoted_session}", READ, lambda answer: answer.content)

    def _request_pairing_code(self, phone_number: str | int) -> _Call[str]:
        body = {"sessionId": self.session_id, "phoneNumber": normalize_phone(phone_number)}
        return _Call("pairing-code", "POST", "/pairing-code", CHANGE, _pairing_code, body)

    def _check_session(self) -> _Call[SessionStatus]:
        return _Call("check-session", "GET", f"/check-session/{self._quoted_session}", READ, self._status)

    def _list_sessions(self) -> _Call[list[SessionStatus]]:
        return _Call("all-sessions", "GET", "/all-sessions", READ, _session_list, authenticated=False)

    def _restart_session(self, wipe: bool) -> _Call[SessionStatus]:
        if not isinstance(wipe, bool):
            raise ValidationError(f"wipe must be True or False, got {wipe!r}")
        body = {"sessionId": self.session_id, "wipe": wipe}
        return _Call("restart-session", "POST", "/restart-session", CHANGE, self._status, body)

    def _delete_session(self) -> _Call[None]:
        return _Call(
            "delete-session",
            "POST",
            "/delete-session",
            CHANGE,
            lambda a: None,
            {"sessionId": self.session_id},
        )

    def _rotate_key(self) -> _Call[str]:
        return _Call(
            "rotate-key", "POST", "/rotate-key", CHANGE, self._new_key, {"sessionId": self.session_id}
        )

    def _send_text(self, to: str | int, message: str, typing: bool, dry_run: bool) -> _Call[SendResult]:
        digits = normalize_phone(to)
        body = {"sessionId": self.session_id, "to": digits, "type": "text", "message": check_message(message)}
        return self._send(digits, body, typing, dry_run)

    def _send_media(
        self,
        to: str | int,
        url: str,
        media_type: str,
        caption: str | None,
        file_name: str | None,
        dry_run: bool,
    ) -> _Call[SendResult]:
        digits = normalize_phone(to)
        url = check_url(url)
        body: dict[str, Any] = {
            "sessionId": self.session_id,
            "to": digits,
            "type": resolve_media_type(url, media_type),
            "url": url,
        }
        if (caption := check_optional_text(caption, "Caption")) is not None:
            body["caption"] = caption
        if (file_name := check_file_name(file_name)) is not None:
            body["fileName"] = file_name
        return self._send(digits, body, False, dry_run)

    def _send(self, digits: str, body: dict[str, Any], typing: bool, dry_run: bool) -> _Call[SendResult]:
        for name, flag in (("typing", typing), ("dry_run", dry_run)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{name} must be True or False, got {flag!r}")
        if typing:
            body["typing"] = True
        if dry_run:
            body["dryRun"] = True

        def parse(answer: _Answer) -> SendResult:
            return SendResult.from_api(digits, answer.data, answer.request_id)

        # A dry run changes nothing, so it may be retried like a read.
        return _Call(f"send to {digits}", "POST", "/send", READ if dry_run else CHANGE, parse, body)

    def _status(self, answer: _Answer) -> SessionStatus:
        return SessionStatus.from_api(self.session_id, answer.data)

    def _new_key(self, answer: _Answer) -> str:
        key = answer.data.get("apiKey")
        if not isinstance(key, str) or not key:
            # The rotation happened, but the new key did not reach us: never a retry (it would be refused).
            raise OutcomeUnknownError(
                "rotate-key answered success without a new apiKey; the old key may no longer work",
                request_id=answer.request_id,
            )
        self._api_key = key
        return key

    # Answers and retries -----------------------------------------------------------------------

    def _attempts(self, call: _Call[T]) -> Generator[_Call[T] | _Sleep, httpx.Response | Exception | None, T]:
        """
        Run one call to its end: yield the call to have it sent, or a pause to have it waited out.

        The driver sends back the ``httpx.Response``, or the exception the request raised. This is the
        same idea as httpx's ``Auth.sync_auth_flow`` / ``async_auth_flow``: one generator holds every
        decision, and a sync and an async driver only do the I/O and the sleeping.

        A call that changes something is retried only after an attempt that certainly did not take
        effect (429, the API's queue-full answer, a request that never left), so every pause follows
        a refusal: the driver tells its caller so (``on_refused``) before it waits.
        """
        budget = _Budget()
        while True:
            budget.attempt += 1
            outcome = yield call
            try:
                if isinstance(outcome, httpx.Response):
                    return call.parse(self._answer(call, outcome))
                # Chained for the traceback, but not an h11 refusal: its text quotes the header (the key).
                cause = None if isinstance(outcome, httpx.LocalProtocolError) else outcome
                raise self._transport_error(call, outcome) from cause
            except RateLimitedError as error:
                pause = self._rate_limit_pause(call, error, budget)
            except WhatsInfinityError as error:
                pause = self._backoff_pause(call, error, budget)
            yield _Sleep(pause)

    def _rate_limit_pause(self, call: _Call[Any], error: RateLimitedError, budget: _Budget) -> float:
        wait = max(float(error.retry_after or 1), 0.0)
        # A little jitter keeps many clients from all coming back in the same instant.
        pause = wait + random.uniform(0, min(0.5, 0.05 * wait + 0.05))
        if budget.rate_limit_waited + pause > self.retry.max_rate_limit_wait:
            raise RateLimitedError(
                f"{call.name}: rate limited, and waiting another {wait:.0f} s would exceed "
                f"max_rate_limit_wait ({self.retry.max_rate_limit_wait:.0f} s, "
                f"{budget.rate_limit_waited:.0f} s waited so far)",
                retry_after=error.retry_after,
                status_code=error.status_code,
                error=error.error,
                details=error.details,
                request_id=error.request_id,
            ) from error
        budget.rate_limit_waited += pause
        log.warning("WhatsInfinity %s; waiting %.1f s as the server asked", error, pause)
        return pause

    def _backoff_pause(self, call: _Call[Any], error: WhatsInfinityError, budget: _Budget) -> float:
        retryable = isinstance(error, (ServiceUnreachableError, QueueFullError)) or (
            call.kind == READ and isinstance(error, ServerError)
        )
        if not retryable or budget.attempt >= self.retry.max_attempts:
            raise error
        ceiling = min(self.retry.backoff_max, self.retry.backoff_base * 2 ** (budget.attempt - 1))
        pause = random.uniform(0, ceiling)
        if time.monotonic() - budget.started + pause > self.retry.retry_deadline:
            raise error
        log.warning(
            "WhatsInfinity %s; retrying in %.1f s (attempt %d of %d)",
            error,
            pause,
            budget.attempt + 1,
            self.retry.max_attempts,
        )
        return pause

    def _answer(self, call: _Call[Any], response: httpx.Response) -> _Answer:
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
        raise self._error_for(call, response, body if isinstance(body, dict) else None, request_id)

    def _error_for(
        self, call: _Call[Any], response: httpx.Response, body: dict[str, Any] | None, request_id: str | None
    ) -> WhatsInfinityError:
        status = response.status_code
        details: str | None
        if body is None or (response.is_success and body.get("success") is not False):
            snippet = response.text[:200].strip() or "an empty body"
            error_text, details = None, f"unreadable answer: {snippet}"
        else:
            error_text = text_or_none(body.get("error"))
            details = text_or_none(body.get("details"))
        said = ": ".join(part for part in (error_text, details) if part) or response.reason_phrase
        message = f"{call.name} failed with HTTP {status}: {said}"
        fields: dict[str, Any] = {
            "status_code": status,
            "error": error_text,
            "details": details,
            "request_id": request_id,
        }
        if response.is_success:
            # 2xx, but not an answer we can read: for a change, we cannot tell whether it happened.
            cls: type[WhatsInfinityError] = OutcomeUnknownError if call.kind == CHANGE else ServerError
            return cls(f"{call.name}: the server answered HTTP {status} with {details}", **fields)
        if status == 429:
            return RateLimitedError(message, retry_after=_retry_after(body, response), **fields)
        if status == 503 and call.path == "/send" and _is_queue_full(body):
            # The API's own answer: the queue is full and the message was not taken.
            return QueueFullError(message, **fields)
        if status >= 500:
            if call.kind == CHANGE:
                # A proxy's 502/503/504 can come after the service acted: never retried.
                return OutcomeUnknownError(
                    f"{message}. The call may or may not have taken effect, so it was not retried",
                    **fields,
                )
            return ServerError(message, **fields)
        cls = ERRORS_BY_STATUS.get(status, WhatsInfinityError)
        return cls(message, **fields)

    def _transport_error(self, call: _Call[Any], exc: Exception | None) -> WhatsInfinityError:
        """Map what the network layer raised for a request that was handed to it."""
        # Whatever the transport said, the key never goes into an error: some errors quote headers.
        reason = _reason(exc).replace(self._api_key, "***")
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return ValidationError(f"{call.name}: invalid base URL {self.shown_url!r}: {reason}")
        if isinstance(exc, httpx.LocalProtocolError):
            # h11 refused to write the request (an illegal header value, say): nothing left. Its text
            # quotes the header, which may be the key, so only the type is shown.
            return ValidationError(
                f"{call.name}: the HTTP library refused to send the request (LocalProtocolError): a header "
                "or the URL holds characters HTTP does not allow; check the connection's API key and "
                "base URL; nothing was sent"
            )
        if isinstance(exc, NEVER_SENT):
            return ServiceUnreachableError(f"{call.name}: could not reach {self.shown_url}: {reason}")
        if call.kind == READ:
            return ServiceUnreachableError(f"{call.name}: no answer from {self.shown_url}: {reason}")
        return OutcomeUnknownError(
            f"{call.name}: the request was sent but its answer was lost ({reason}); it may or may not have "
            "taken effect, so it was not retried"
        )


ERRORS_BY_STATUS: dict[int, type[WhatsInfinityError]] = {
    400: ValidationError,
    413: ValidationError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: SessionNotFoundError,
    409: ConflictError,
    422: NotOnWhatsAppError,
}


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


class WhatsInfinityClient(_ClientBase):
    """
    A blocking client for one WhatsInfinity session, reusing one pooled ``httpx.Client``.

    .. code-block:: python

        with WhatsInfinityClient(session_id="mysession", api_key=key) as client:
            client.send_text("+91 99999 99999", "Nightly load finished")
    """

    @cached_property
    def _http(self) -> httpx.Client:
        return httpx.Client(**self._client_options())

    def close(self) -> None:
        """Close the connection pool."""
        if "_http" in self.__dict__:
            self._http.close()
            del self.__dict__["_http"]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: _Call[T], callbacks: SendCallbacks | None = None) -> T:
        attempts = self._attempts(call)
        step = next(attempts)
        while True:
            outcome: httpx.Response | Exception | None = None
            if isinstance(step, _Sleep):
                if callbacks is not None and callbacks.on_refused is not None:
                    callbacks.on_refused()
                time.sleep(step.seconds)
            else:
                request = self._build(self._http, step)
                if callbacks is not None and callbacks.before_send is not None:
                    callbacks.before_send()
                try:
                    outcome = self._http.send(request)
                except Exception as exc:  # the request may have left: _attempts decides what it means
                    outcome = exc
            try:
                step = attempts.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def create_session(self) -> SessionStatus:
        """Create this session on the server with this client's key; it then waits to be linked."""
        return self._run(self._create_session())

    def get_qr(self) -> bytes:
        """Return the session's current QR code as PNG bytes."""
        return self._run(self._get_qr())

    def request_pairing_code(self, phone_number: str | int) -> str:
        """
        Ask for a pairing code to enter in WhatsApp under Linked Devices.

        :param phone_number: The phone's number with country code.
        """
        return self._run(self._request_pairing_code(phone_number))

    def check_session(self) -> SessionStatus:
        """Return the session's status and health."""
        return self._run(self._check_session())

    def list_sessions(self) -> list[SessionStatus]:
        """Return every session on the server with its status."""
        return self._run(self._list_sessions())

    def restart_session(self, wipe: bool = False) -> SessionStatus:
        """
        Restart the session.

        :param wipe: Also forget its link, so that it must be linked again by QR or pairing code.
        """
        return self._run(self._restart_session(wipe))

    def delete_session(self) -> None:
        """Delete the session for good."""
        self._run(self._delete_session())

    def rotate_key(self) -> str:
        """Give the session a new API key, use it from now on, and return it. The old key stops working."""
        return self._run(self._rotate_key())

    def send_text(
        self,
        to: str | int,
        message: str,
        *,
        typing: bool = False,
        dry_run: bool = False,
        callbacks: SendCallbacks | None = None,
    ) -> SendResult:
        """
        Send a text message.

        :param to: The recipient's number with country code; ``+``, spaces and dashes are fine.
        :param message: The text, at most 65000 characters.
        :param typing: Show a typing indicator briefly before the message.
        :param dry_run: Only validate the message; nothing is sent.
        :param callbacks: Told right before each attempt goes on the wire and after each certain
            refusal, for a caller that keeps its own record of sends (see :class:`SendCallbacks`).
        """
        return self._run(self._send_text(to, message, typing, dry_run), callbacks)

    def send_media(
        self,
        to: str | int,
        url: str,
        *,
        media_type: str = "media",
        caption: str | None = None,
        file_name: str | None = None,
        dry_run: bool = False,
        callbacks: SendCallbacks | None = None,
    ) -> SendResult:
        """
        Send an image, video, audio file or document from a public URL.

        :param to: The recipient's number with country code.
        :param url: A publicly accessible http(s) URL of the file.
        :param media_type: ``media`` to detect the kind from the URL's extension, or ``image``,
            ``video``, ``audio`` or ``document``.
        :param caption: Caption for images, videos and documents.
        :param file_name: File name shown for a document, such as ``invoice.pdf``.
        :param dry_run: Only validate the message; nothing is sent.
        :param callbacks: Told right before each attempt goes on the wire and after each certain
            refusal (see :class:`SendCallbacks`).
        """
        return self._run(self._send_media(to, url, media_type, caption, file_name, dry_run), callbacks)


class AsyncWhatsInfinityClient(_ClientBase):
    """
    The asyncio twin of :class:`WhatsInfinityClient`, reusing one pooled ``httpx.AsyncClient`` per loop.

    A pool belongs to the event loop it was opened on. Used from another loop (a second
    ``asyncio.run``), the client opens a new pool there instead of failing after the request left.
    """

    _pool: httpx.AsyncClient | None = None
    _pool_loop: asyncio.AbstractEventLoop | None = None

    @property
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or self._pool_loop is not loop:
            # The old pool's connections died with their loop; it cannot even be closed from this one.
            pool = httpx.AsyncClient(**self._client_options())
            self._pool, self._pool_loop = pool, loop
        return pool

    async def aclose(self) -> None:
        """Close the connection pool (when it was opened on the running loop; else just forget it)."""
        pool, loop = self._pool, self._pool_loop
        self._pool = self._pool_loop = None
        if pool is not None and loop is asyncio.get_running_loop():
            await pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, call: _Call[T], callbacks: SendCallbacks | None = None) -> T:
        attempts = self._attempts(call)
        step = next(attempts)
        while True:
            outcome: httpx.Response | Exception | None = None
            if isinstance(step, _Sleep):
                if callbacks is not None and callbacks.on_refused is not None:
                    callbacks.on_refused()
                await asyncio.sleep(step.seconds)
            else:
                http = self._http
                request = self._build(http, step)
                if callbacks is not None and callbacks.before_send is not None:
                    callbacks.before_send()
                try:
                    outcome = await http.send(request)
                except Exception as exc:  # the request may have left: _attempts decides what it means
                    outcome = exc
            try:
                step = attempts.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def create_session(self) -> SessionStatus:
        """Create this session on the server with this client's key; it then waits to be linked."""
        return await self._run(self._create_session())

    async def get_qr(self) -> bytes:
        """Return the session's current QR code as PNG bytes."""
        return await self._run(self._get_qr())

    async def request_pairing_code(self, phone_number: str | int) -> str:
        """
        Ask for a pairing code to enter in WhatsApp under Linked Devices.

        :param phone_number: The phone's number with country code.
        """
        return await self._run(self._request_pairing_code(phone_number))

    async def check_session(self) -> SessionStatus:
        """Return the session's status and health."""
        return await self._run(self._check_session())

    async def list_sessions(self) -> list[SessionStatus]:
        """Return every session on the server with its status."""
        return await self._run(self._list_sessions())

    async def restart_session(self, wipe: bool = False) -> SessionStatus:
        """
        Restart the session.

        :param wipe: Also forget its link, so that it must be linked again by QR or pairing code.
        """
        return await self._run(self._restart_session(wipe))

    async def delete_session(self) -> None:
        """Delete the session for good."""
        await self._run(self._delete_session())

    async def rotate_key(self) -> str:
        """Give the session a new API key, use it from now on, and return it. The old key stops working."""
        return await self._run(self._rotate_key())

    async def send_text(
        self,
        to: str | int,
        message: str,
        *,
        typing: bool = False,
        dry_run: bool = False,
        callbacks: SendCallbacks | None = None,
    ) -> SendResult:
        """
        Send a text message.

        :param to: The recipient's number with country code; ``+``, spaces and dashes are fine.
        :param message: The text, at most 65000 characters.
        :param typing: Show a typing indicator briefly before the message.
        :param dry_run: Only validate the message; nothing is sent.
        :param callbacks: See :class:`SendCallbacks`.
        """
        return await self._run(self._send_text(to, message, typing, dry_run), callbacks)

    async def send_media(
        self,
        to: str | int,
        url: str,
        *,
        media_type: str = "media",
        caption: str | None = None,
        file_name: str | None = None,
        dry_run: bool = False,
        callbacks: SendCallbacks | None = None,
    ) -> SendResult:
        """
        Send an image, video, audio file or document from a public URL.

        :param to: The recipient's number with country code.
        :param url: A publicly accessible http(s) URL of the file.
        :param media_type: ``media`` to detect the kind from the URL's extension, or ``image``,
            ``video``, ``audio`` or ``document``.
        :param caption: Caption for images, videos and documents.
        :param file_name: File name shown for a document, such as ``invoice.pdf``.
        :param dry_run: Only validate the message; nothing is sent.
        :param callbacks: See :class:`SendCallbacks`.
        """
        call = self._send_media(to, url, media_type, caption, file_name, dry_run)
        return await self._run(call, callbacks)
