"""
The WhatsInfinity API, each call described once, and the methods made from each description.

A method of :class:`_Api` validates a call's arguments and returns a :class:`_Call`: what to send, how
it may be retried, how its answer becomes a result. That method carries the call's signature and its
one docstring. :class:`ApiMethod` turns it into a blocking method of
:class:`~airflow_provider_whatsinfinity.client.WhatsInfinityClient`, a coroutine method of
:class:`~airflow_provider_whatsinfinity.client.AsyncWhatsInfinityClient`, and (through
:meth:`ApiMethod.dress`) the hook's methods, all typed with the description's own parameters.
Nothing here speaks HTTP: the clients do.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MethodType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, ParamSpec, TypeVar, overload
from urllib.parse import quote

from airflow_provider_whatsinfinity.answers import _pairing_code, _session_list
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, ValidationError
from airflow_provider_whatsinfinity.models import SendResult, SessionStatus
from airflow_provider_whatsinfinity.validation import (
    check_file_name,
    check_message,
    check_optional_text,
    check_url,
    normalize_phone,
    resolve_media_type,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Concatenate

    from typing_extensions import Self

    from airflow_provider_whatsinfinity.answers import _Answer
    from airflow_provider_whatsinfinity.client import (
        AsyncWhatsInfinityClient,
        WhatsInfinityClient,
    )

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound="Callable[..., Any]")


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
class _Call(Generic[T]):
    """One API call: the request, how it may be retried, how its answer becomes a result, who is told."""

    name: str
    method: str
    path: str
    # A read changes nothing and may be retried; a change (a send, a session change) must never run twice.
    kind: Literal["read", "change"]
    parse: Callable[[_Answer], T]
    json: dict[str, Any] | None = field(default=None, repr=False)  # create-session's carries the key
    authenticated: bool = True
    callbacks: SendCallbacks | None = field(default=None, repr=False)


class ApiMethod(Generic[P, T]):
    """
    One method of the API, made from the method that describes its call.

    Read on a :class:`WhatsInfinityClient` it is a blocking method, on an
    :class:`AsyncWhatsInfinityClient` a coroutine method; both take the description's parameters, and
    ``help()`` shows them with the description's docstring (the asyncio twin's points to it). The
    hook makes its methods from it too, with :meth:`dress`.

    :param describe: Validates the arguments and returns the call; its docstring is the method's.
    """

    def __init__(self, describe: Callable[Concatenate[_Api, P], _Call[T]]) -> None:
        self.name = describe.__name__.lstrip("_")
        self.__doc__ = describe.__doc__
        self.signature = inspect.signature(describe).replace(return_annotation=inspect.Signature.empty)

        def blocking(client: WhatsInfinityClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return client._run(describe(client, *args, **kwargs))

        async def twin(client: AsyncWhatsInfinityClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
            # Validated when awaited, not when called, as in any coroutine method.
            return await client._run(describe(client, *args, **kwargs))

        self.blocking = self.dress(blocking, f"WhatsInfinityClient.{self.name}", self.__doc__)
        self.asyncio = self.dress(
            twin, f"AsyncWhatsInfinityClient.{self.name}", f"Asyncio twin of {self.reference}."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @property
    def reference(self) -> str:
        """How a docstring points to this method's documentation."""
        return f":meth:`~airflow_provider_whatsinfinity.client.WhatsInfinityClient.{self.name}`"

    def dress(self, function: F, qualname: str, doc: str | None) -> F:
        """
        Give ``function`` this method's signature, and the name and docstring it has as a method.

        :param function: A function whose first parameter is the instance it is a method of.
        :param qualname: Its qualified name, such as ``WhatsInfinityHook.send_text``.
        :param doc: Its docstring.
        """
        function.__qualname__ = qualname
        function.__name__ = qualname.rpartition(".")[2]
        function.__doc__ = doc
        function.__dict__["__signature__"] = self.signature  # what inspect and help() read
        return function

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, client: WhatsInfinityClient, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, client: AsyncWhatsInfinityClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: _Api | None, owner: type[Any]) -> Any:
        if client is None:
            return self
        return MethodType(self.asyncio if client._asyncio else self.blocking, client)

    @overload
    def __call__(self, client: WhatsInfinityClient, /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    @overload
    def __call__(
        self, client: AsyncWhatsInfinityClient, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    def __call__(self, client: _Api, /, *args: Any, **kwargs: Any) -> Any:
        """Run the method on ``client``: ``WhatsInfinityClient.check_session(client)``, as with any method."""
        method: Callable[..., Any] = self.asyncio if client._asyncio else self.blocking
        return method(client, *args, **kwargs)


class _Api:
    """
    The API's calls, each described once by a method that validates its arguments and returns the call.

    A description's docstring is the API method's; the method of the same name without the underscore
    is made from it (:class:`ApiMethod`). The clients set the session and the key.
    """

    session_id: str
    _api_key: str
    # Whether ApiMethod makes this client's API methods coroutine methods.
    _asyncio: ClassVar[bool] = False

    @property
    def _quoted_session(self) -> str:
        return quote(self.session_id, safe="")

    def _create_session(self) -> _Call[SessionStatus]:
        """Create this session on the server with this client's key; it then waits to be linked."""
        body = {"sessionId": self.session_id, "apiKey": self._api_key}
        return self._change(name="create-session", json=body, parse=self._status, authenticated=False)

    def _get_qr(self) -> _Call[bytes]:
        """Return the session's current QR code as PNG bytes."""
        path = f"/qr/{self._quoted_session}"
        return _Call(name="qr", method="GET", path=path, kind="read", parse=lambda answer: answer.content)

    def _request_pairing_code(self, phone_number: str | int) -> _Call[str]:
        """
        Ask for a pairing code to enter in WhatsApp under Linked Devices.

        :param phone_number: The phone's number with country code.
        """
        body = {"sessionId": self.session_id, "phoneNumber": normalize_phone(phone_number)}
        return self._change(name="pairing-code", json=body, parse=_pairing_code)

    def _check_session(self) -> _Call[SessionStatus]:
        """Return the session's status and health."""
        path = f"/check-session/{self._quoted_session}"
        return _Call(name="check-session", method="GET", path=path, kind="read", parse=self._status)

    def _list_sessions(self) -> _Call[list[SessionStatus]]:
        """Return every session on the server with its status."""
        return _Call(
            name="all-sessions",
            method="GET",
            path="/all-sessions",
            kind="read",
            parse=_session_list,
            authenticated=False,
        )

    def _restart_session(self, wipe: bool = False) -> _Call[SessionStatus]:
        """
        Restart the session.

        :param wipe: Also forget its link, so that it must be linked again by QR or pairing code.
        """
        if not isinstance(wipe, bool):
            raise ValidationError(f"wipe must be True or False, got {wipe!r}")
        body = {"sessionId": self.session_id, "wipe": wipe}
        return self._change(name="restart-session", json=body, parse=self._status)

    def _delete_session(self) -> _Call[None]:
        """Delete the session for good."""
        return self._change(name="delete-session", json={"sessionId": self.session_id}, parse=lambda a: None)

    def _rotate_key(self) -> _Call[str]:
        """Give the session a new API key, use it from now on, and return it. The old key stops working."""
        return self._change(name="rotate-key", json={"sessionId": self.session_id}, parse=self._new_key)

    def _send_text(
        self,
        to: str | int,
        message: str,
        *,
        typing: bool = False,
        dry_run: bool = False,
        callbacks: SendCallbacks | None = None,
    ) -> _Call[SendResult]:
        """
        Send a text message.

        :param to: The recipient's number with country code; ``+``, spaces and dashes are fine.
        :param message: The text, at most 65000 characters (an emoji counts 2).
        :param typing: Show a typing indicator briefly before the message.
        :param dry_run: Only validate the message; nothing is sent.
        :param callbacks: Told right before each attempt goes on the wire and after each certain
            refusal, for a caller that keeps its own record of sends (see :class:`SendCallbacks`).
        """
        digits = normalize_phone(to)
        body = {"sessionId": self.session_id, "to": digits, "type": "text", "message": check_message(message)}
        return self._send(digits, body, typing, dry_run, callbacks)

    def _send_media(
        self,
        to: str | int,
        url: str,
        *,
        media_type: str = "media",
        caption: str | None = None,
        file_name: str | None = None,
        dry_run: bool = False,
        callbacks: SendCallbacks | None = None,
    ) -> _Call[SendResult]:
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
        return self._send(digits, body, False, dry_run, callbacks)

    def _send(
        self, digits: str, body: dict[str, Any], typing: bool, dry_run: bool, callbacks: SendCallbacks | None
    ) -> _Call[SendResult]:
        for name, flag in (("typing", typing), ("dry_run", dry_run)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{name} must be True or False, got {flag!r}")
        if typing:
            body["typing"] = True
        if dry_run:
            body["dryRun"] = True

        def parse(answer: _Answer) -> SendResult:
            return SendResult.from_api(digits, answer.data, answer.request_id)

        return _Call(
            name=f"send to {digits}",
            method="POST",
            path="/send",
            kind="read" if dry_run else "change",  # a dry run changes nothing, so it may be retried
            parse=parse,
            json=body,
            callbacks=callbacks,
        )

    def _change(
        self, *, name: str, json: dict[str, Any], parse: Callable[[_Answer], T], authenticated: bool = True
    ) -> _Call[T]:
        """Describe a call that changes something on the server, POSTed to ``/<name>``: never run twice."""
        return _Call(
            name=name,
            method="POST",
            path=f"/{name}",
            kind="change",
            parse=parse,
            json=json,
            authenticated=authenticated,
        )

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

    # The API itself: blocking methods on WhatsInfinityClient, coroutine methods on AsyncWhatsInfinityClient.
    create_session = ApiMethod(_create_session)
    get_qr = ApiMethod(_get_qr)
    request_pairing_code = ApiMethod(_request_pairing_code)
    check_session = ApiMethod(_check_session)
    list_sessions = ApiMethod(_list_sessions)
    restart_session = ApiMethod(_restart_session)
    delete_session = ApiMethod(_delete_session)
    rotate_key = ApiMethod(_rotate_key)
    send_text = ApiMethod(_send_text)
    send_media = ApiMethod(_send_media)
