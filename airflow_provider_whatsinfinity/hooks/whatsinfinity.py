"""The WhatsInfinity hook: an Airflow Connection turned into a WhatsInfinity client."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_whatsinfinity._compat import (
    BaseHook,
    aget_connection,
    mask_secret,
    redact,
    run_blocking,
)
from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient, RetrySettings, WhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import ValidationError, WhatsInfinityError
from airflow_provider_whatsinfinity.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_whatsinfinity.spec import (
    CONN_TYPE,
    DEFAULT_BASE_URL,
    DEFAULT_CONN_ID,
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    DEFAULT_TIMEOUT,
)
from airflow_provider_whatsinfinity.validation import check_number, redact_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from typing import Concatenate

    from airflow.sdk import Connection

    from airflow_provider_whatsinfinity.api import ApiMethod
    from airflow_provider_whatsinfinity.models import SessionStatus

P = ParamSpec("P")
T = TypeVar("T")


def _on_client(api: ApiMethod[P, T]) -> Callable[Concatenate[WhatsInfinityHook, P], T]:
    """
    Make the hook's method for an API method: the blocking client's, run on the hook's client.

    It takes the client method's parameters, typed as they are there, and its docstring points there.
    The client and its method are looked up at each call, as ``hook.client.<name>(...)`` would be: a
    method kept after :meth:`WhatsInfinityHook.close` still works, and a patched client method is used.
    """

    def method(hook: WhatsInfinityHook, /, *args: P.args, **kwargs: P.kwargs) -> T:
        run: Callable[P, T] = getattr(hook.client, api.name)
        return run(*args, **kwargs)

    return api.dress(
        method, f"WhatsInfinityHook.{api.name}", f"Same as {api.reference}, on the connection's session."
    )


def _on_async_client(
    api: ApiMethod[P, T],
) -> Callable[Concatenate[WhatsInfinityHook, P], Coroutine[Any, Any, T]]:
    """Make the hook's asyncio twin of an API method, ``a<name>``: the asyncio client's, on the hook's."""

    async def method(hook: WhatsInfinityHook, /, *args: P.args, **kwargs: P.kwargs) -> T:
        run: Callable[P, Awaitable[T]] = getattr(await hook.get_async_client(), api.name)
        return await run(*args, **kwargs)

    return api.dress(
        method, f"WhatsInfinityHook.a{api.name}", f"Asyncio twin of :meth:`{api.name}`; same parameters."
    )


class WhatsInfinityHook(BaseHook):
    """
    Talk to WhatsInfinity with the session and key of an Airflow Connection.

    The connection (type ``whatsinfinity``): **Base URL** (host) such as
    ``https://api.whatsinfinity.com``, empty for the public service; **Session ID** (login);
    **API key** (password); extras ``timeout`` (seconds, default 30) and ``max_rate_limit_wait``
    (seconds, default 120). The API key is registered with Airflow's secret masker as soon as it is
    read.

    .. code-block:: python

        hook = WhatsInfinityHook(whatsinfinity_conn_id="whatsinfinity_default")
        if hook.check_session().is_ready:
            hook.send_text("919999999999", "Nightly load finished")

    :param whatsinfinity_conn_id: The connection to use.
    :param timeout: Seconds allowed per request; overrides the connection's ``timeout`` extra.
    :param max_rate_limit_wait: Longest total wait for 429s in one call; overrides the connection's
        ``max_rate_limit_wait`` extra.
    :param max_attempts: Attempts for errors retried with backoff (at least 1; default 4).
    :param retry: Backoff settings (attempts, delays, deadline); ``max_attempts`` overrides its
        attempts, and the 429 budget always comes from ``max_rate_limit_wait`` or the connection.
    """

    conn_name_attr = "whatsinfinity_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "WhatsInfinity"

    def __init__(
        self,
        whatsinfinity_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_rate_limit_wait: float | None = None,
        max_attempts: int | None = None,
        retry: RetrySettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.timeout = timeout
        self.max_rate_limit_wait = max_rate_limit_wait
        self.max_attempts = max_attempts
        self.retry = retry
        self._async_client: AsyncWhatsInfinityClient | None = None
        # After rotate_key() the connection's password is stale: both clients use the new key.
        self._rotated_key: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(whatsinfinity_conn_id={self.whatsinfinity_conn_id!r})"

    # Clients -----------------------------------------------------------------------------------

    @cached_property
    def client(self) -> WhatsInfinityClient:
        """The blocking client, built from the connection on first use and reused after that."""
        return WhatsInfinityClient(**self._client_params(self.get_connection(self.whatsinfinity_conn_id)))

    def get_conn(self) -> WhatsInfinityClient:
        """Return the blocking client (Airflow's usual name for it)."""
        return self.client

    async def get_async_client(self) -> AsyncWhatsInfinityClient:
        """Return the asyncio client, built from the connection on first use and reused after that."""
        if self._async_client is None:
            connection = await aget_connection(self, self.whatsinfinity_conn_id)
            # It masks the key: a Task SDK call, which a triggerer on Airflow 3.0 takes only this way.
            params = await run_blocking(self._client_params, connection)
            self._async_client = AsyncWhatsInfinityClient(**params)
        return self._async_client

    def prepare_async_client(self) -> AsyncWhatsInfinityClient:
        """
        Build the asyncio client now, reading the connection the blocking way, and return it.

        For a task that runs an event loop of its own (a send over several sessions): every
        connection is read, and one that cannot work fails, before the loop starts and anything is
        sent. The ``a*`` methods use this client from then on.
        """
        if self._async_client is None:
            connection = self.get_connection(self.whatsinfinity_conn_id)
            self._async_client = AsyncWhatsInfinityClient(**self._client_params(connection))
        return self._async_client

    def close(self) -> None:
        """Close the blocking client's connection pool."""
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    async def aclose(self) -> None:
        """Close the asyncio client's connection pool."""
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def _client_params(self, connection: Connection, **overrides: Any) -> dict[str, Any]:
        """Gather the client's settings from the connection, the hook's arguments and ``overrides``."""
        conn_id = self.whatsinfinity_conn_id
        # A key or session ID pasted into the form often brings a space or a newline with it.
        api_key = self._rotated_key or (connection.password or "").strip()
        if api_key:
            mask_secret(api_key)
        session_id = (connection.login or "").strip()
        if not session_id:
            raise ValidationError(
                f"Connection {conn_id!r} has no Session ID: set its login to the session ID"
            )
        if not api_key:
            raise ValidationError(
                f"Connection {conn_id!r} has no API key: set its password to the session's key"
            )
        extras = connection.extra_dejson
        timeout = self.timeout or _extra_number(extras, "timeout", DEFAULT_TIMEOUT, conn_id)
        if self.max_rate_limit_wait is not None:
            max_wait = self.max_rate_limit_wait
        else:
            max_wait = _extra_number(extras, "max_rate_limit_wait", DEFAULT_MAX_RATE_LIMIT_WAIT, conn_id)
        retry: dict[str, Any] = {"max_rate_limit_wait": max_wait}
        if self.max_attempts is not None:
            retry["max_attempts"] = self.max_attempts
        params: dict[str, Any] = {
            "session_id": session_id,
            "api_key": api_key,
            "base_url": base_url_of(connection),
            "timeout": timeout,
            "retry": replace(self.retry or RetrySettings(), **{**retry, **overrides}),
        }
        return params

    # The API: each method is the client's, run on this hook's client (see _on_client) -------------

    create_session = _on_client(WhatsInfinityClient.create_session)
    get_qr = _on_client(WhatsInfinityClient.get_qr)
    request_pairing_code = _on_client(WhatsInfinityClient.request_pairing_code)
    check_session = _on_client(WhatsInfinityClient.check_session)
    list_sessions = _on_client(WhatsInfinityClient.list_sessions)
    restart_session = _on_client(WhatsInfinityClient.restart_session)
    delete_session = _on_client(WhatsInfinityClient.delete_session)
    send_text = _on_client(WhatsInfinityClient.send_text)
    send_media = _on_client(WhatsInfinityClient.send_media)
    asend_text = _on_async_client(AsyncWhatsInfinityClient.send_text)
    asend_media = _on_async_client(AsyncWhatsInfinityClient.send_media)

    def rotate_key(self) -> str:
        """
        Give the session a new API key and return it; the old key stops working at once.

        The new key is registered with the secret masker before it is returned, and this hook uses it
        from then on. Store it in the connection (or your secrets backend) yourself: nothing else will.
        """
        new_key = self.client.rotate_key()
        mask_secret(new_key)
        self._rotated_key = new_key
        if self._async_client is not None:
            self._async_client.use_key(new_key)
        return new_key

    async def acheck_session(self) -> SessionStatus:
        """Asyncio twin of :meth:`check_session`."""
        return await (await self.get_async_client()).check_session()

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the connection the way the UI's Test button does: one check-session call, no retries.

        :return: ``(True, "...")`` naming the session and its status, or ``(False, reason)``.
        """
        try:
            params = self._client_params(
                self.get_connection(self.whatsinfinity_conn_id), max_attempts=1, max_rate_limit_wait=0
            )
            with WhatsInfinityClient(**params) as client:
                status = client.check_session()
        except WhatsInfinityError as error:
            return False, redact(str(error))
        except Exception as error:
            # Only the type: the text of an unexpected error may quote the key or a URL's password.
            return False, f"Cannot test connection {self.whatsinfinity_conn_id!r}: {type(error).__name__}"
        readiness = "ready to send" if status.is_ready else "not ready to send yet"
        message = (
            f"Connected to WhatsInfinity session {status.session_id!r}: status {status.status}, {readiness}"
        )
        if status.warning:
            message += f"; warning: {status.warning}"
        return True, message

    # The connection form before Airflow 3.2 ----------------------------------------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """
        Return the extras' form fields for Airflow before 3.2, built from ``CONN_FIELDS``.

        Text fields: the providers manager of Airflow 3.0 and 3.1 accepts only string, integer,
        password and boolean fields, and the extras take fractions of a second. The hook reads the
        text as a number, and says which extra is wrong when it is not one.
        """
        from wtforms import StringField
        from wtforms.validators import Optional

        return {
            name: StringField(
                spec["label"],
                default=f"{spec['schema']['default']:g}",
                description=spec["description"],
                validators=[Optional()],
            )
            for name, spec in CONN_FIELDS.items()
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return how the standard fields are shown, for Airflow before 3.2, from ``UI_FIELD_BEHAVIOUR``."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }


def base_url_of(connection: Connection) -> str:
    """
    Return the API base URL a connection points at.

    The host may be a full URL (``https://api.whatsinfinity.com``), or a bare host whose scheme
    comes from the connection's schema (``https``; ``http`` when empty) and whose port from its
    port. An empty host means the public service.

    :param connection: The Airflow connection.
    """
    host = (connection.host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        scheme = (connection.schema or "").strip().lower() or "http"
        if scheme not in ("http", "https"):
            raise ValidationError(
                f"Connection {connection.conn_id!r}: schema {connection.schema!r} is not http or https"
            )
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    try:
        port = parts.port
    except ValueError:  # its text would quote what follows the ':', a password perhaps
        raise ValidationError(
            f"Connection {connection.conn_id!r}: the host {redact_url(host)!r} has a port that is not a "
            "number (a password with ':' or '@' must be percent-encoded)"
        ) from None
    if parts.password:
        mask_secret(parts.password)  # httpx sends it as basic auth; it must never reach a log
    if connection.port and port is None and parts.hostname:
        netloc = f"{parts.netloc}:{connection.port}"
        host = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return host.rstrip("/")


def _extra_number(extras: dict[str, Any], name: str, default: float, conn_id: str) -> float:
    # Older connection forms store extras as "extra__whatsinfinity__<name>".
    value = extras.get(name, extras.get(f"extra__{CONN_TYPE}__{name}"))
    if value is None or value == "":
        return default
    try:
        return check_number(value, f"extra {name!r}", positive=name == "timeout")
    except ValidationError as error:
        raise ValidationError(f"Connection {conn_id!r}: {error}") from None
