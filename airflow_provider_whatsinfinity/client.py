"""
A client for the WhatsInfinity API on httpx, with no Airflow in it.

:class:`WhatsInfinityClient` and :class:`AsyncWhatsInfinityClient` share everything but the I/O:
each API call is described once (:class:`_Call`). Its answer is read in
:mod:`~airflow_provider_whatsinfinity.answers`, and its retries are decided in
:mod:`~airflow_provider_whatsinfinity.retries` (which never sends a message twice), by a generator
that asks its driver to send a request or to sleep. The sync driver uses ``httpx.Client`` and
``time.sleep``, the async one ``httpx.AsyncClient`` and ``asyncio.sleep``.

Errors and log lines never show the API key or a URL's user name and password.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from airflow_provider_whatsinfinity import __version__
from airflow_provider_whatsinfinity.answers import _pairing_code, _result_of, _session_list
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, ValidationError
from airflow_provider_whatsinfinity.models import SendResult, SessionStatus
from airflow_provider_whatsinfinity.retries import RetrySettings, _attempts, _Sleep
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
    from collections.abc import Callable

    from typing_extensions import Self

    from airflow_provider_whatsinfinity.answers import _Answer
    from airflow_provider_whatsinfinity.retries import Outcome

# What users import from here; RetrySettings lives with the retries.
__all__ = [
    "USER_AGENT",
    "AsyncWhatsInfinityClient",
    "RetrySettings",
    "SendCallbacks",
    "WhatsInfinityClient",
    "ssl_context",
]

T = TypeVar("T")

# How a call may be retried: READ changes nothing; CHANGE (sends, session changes) must never run twice.
READ = "read"
CHANGE = "change"

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


class _ClientBase:
    """
    What the sync and async clients share: settings, calls, and how a request is built.

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

    def _settle(self, call: _Call[T], outcome: Outcome) -> T:
        """Return the call's result from what an attempt came back with, or raise the error it means."""
        return _result_of(call, outcome, self._api_key, self.shown_url)


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
        attempts = _attempts(call, self.retry, self._settle)
        step = next(attempts)
        while True:
            outcome: Outcome = None
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
        attempts = _attempts(call, self.retry, self._settle)
        step = next(attempts)
        while True:
            outcome: Outcome = None
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
