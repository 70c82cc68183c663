"""
A client for the WhatsInfinity API on httpx, with no Airflow in it.

:class:`WhatsInfinityClient` and :class:`AsyncWhatsInfinityClient` share everything but the I/O. Each
API call is described once, in :mod:`~airflow_provider_whatsinfinity.api`, with its signature and its
one docstring; there it becomes a blocking method of one client and a coroutine method of the other.
Answers are read in :mod:`~airflow_provider_whatsinfinity.answers`; retries are decided in
:mod:`~airflow_provider_whatsinfinity.retries` (which never sends a message twice), by a generator
that asks its driver to send a request or to sleep. The drivers are all this module adds: the sync
one uses ``httpx.Client`` and ``time.sleep``, the async one ``httpx.AsyncClient`` and
``asyncio.sleep``.

Errors and log lines never show the API key or a URL's user name and password.
"""

from __future__ import annotations

import asyncio
import functools
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from airflow_provider_whatsinfinity import __version__
from airflow_provider_whatsinfinity.answers import _result_of
from airflow_provider_whatsinfinity.api import SendCallbacks, _Api
from airflow_provider_whatsinfinity.exceptions import ValidationError
from airflow_provider_whatsinfinity.retries import RetrySettings, _attempts, _Sleep
from airflow_provider_whatsinfinity.validation import (
    check_api_key,
    check_number,
    check_session_id,
    normalize_base_url,
    redact_url,
)

if TYPE_CHECKING:
    import ssl

    from typing_extensions import Self

    from airflow_provider_whatsinfinity.api import _Call
    from airflow_provider_whatsinfinity.retries import Outcome

# What users import from here; RetrySettings and SendCallbacks live with the retries and the calls.
__all__ = [
    "USER_AGENT",
    "AsyncWhatsInfinityClient",
    "RetrySettings",
    "SendCallbacks",
    "WhatsInfinityClient",
    "ssl_context",
]

T = TypeVar("T")

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


class _ClientBase(_Api):
    """
    What the sync and async clients share: settings, the API's calls, and how a request is built.

    The calls come from :class:`~airflow_provider_whatsinfinity.api._Api`; this class adds what they
    need to go over HTTP.

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

    def copy(self) -> Self:
        """Return a client with the same settings and key, and a connection pool of its own."""
        return type(self)(
            session_id=self.session_id,
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            retry=self.retry,
            transport=self._transport,
        )

    def _client_options(self) -> dict[str, Any]:
        """Return what both httpx clients are built with: one SSL context for all, this client's timeout."""
        return {
            "headers": HEADERS,
            "verify": ssl_context(),
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            "transport": self._transport,
        }

    def _prepare(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
        """
        Build a call's request, encoded and ready to go, and tell the caller it is about to leave.

        Nothing has left when this raises. The key goes with each request rather than with the pool:
        after ``rotate_key()`` the next request carries the new one.
        """
        request = self._build(http, call)
        if call.callbacks is not None and call.callbacks.before_send is not None:
            call.callbacks.before_send()
        return request

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
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

    def _run(self, call: _Call[T]) -> T:
        attempts = _attempts(call, self.retry, self._settle)
        step = next(attempts)
        while True:
            outcome: Outcome = None
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
            else:
                request = self._prepare(self._http, step)
                try:
                    outcome = self._http.send(request)
                except Exception as exc:  # the request may have left: _attempts decides what it means
                    outcome = exc
            try:
                step = attempts.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


class AsyncWhatsInfinityClient(_ClientBase):
    """
    The asyncio twin of :class:`WhatsInfinityClient`, reusing one pooled ``httpx.AsyncClient`` per loop.

    A pool belongs to the event loop it was opened on. Used from another loop (a second
    ``asyncio.run``), the client opens a new pool there instead of failing after the request left.
    """

    _asyncio = True
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

    async def _run(self, call: _Call[T]) -> T:
        attempts = _attempts(call, self.retry, self._settle)
        step = next(attempts)
        while True:
            outcome: Outcome = None
            if isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
            else:
                http = self._http
                request = self._prepare(http, step)
                try:
                    outcome = await http.send(request)
                except Exception as exc:  # the request may have left: _attempts decides what it means
                    outcome = exc
            try:
                step = attempts.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
