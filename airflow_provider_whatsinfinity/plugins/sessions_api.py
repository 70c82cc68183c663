"""
The sessions console's JSON API, mounted by the API server under ``/whatsinfinity``.

``GET /api/sessions`` checks every ``whatsinfinity`` connection stored in the metadata database at
once, each check bounded in time, and reports a failure on that connection's row only. The other
endpoints act on one connection's session: its QR code, a pairing code, create, restart, key rotation
(the new key goes straight into the connection) and delete.

Every endpoint goes through Airflow's own auth dependencies: the list needs permission to read
connections; the QR code, the pairing code and every change need permission to edit them. No answer
and no log line carries an API key or a URL's password: errors are the service's message with its
``requestId``, cleaned of both.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_whatsinfinity._compat import mask_secret, redact
from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient
from airflow_provider_whatsinfinity.exceptions import (
    AuthenticationError,
    ConflictError,
    RateLimitedError,
    ServiceUnreachableError,
    SessionNotFoundError,
    ValidationError,
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook, base_url_of
from airflow_provider_whatsinfinity.plugins.console_page import (
    CrossSiteRequestError,
    TokenCookieAsBearer,
    is_page,
    refuse_cross_site,
    render_console,
    render_sign_in,
)
from airflow_provider_whatsinfinity.spec import CONN_TYPE
from airflow_provider_whatsinfinity.validation import redact_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow.models.connection import Connection

    from airflow_provider_whatsinfinity.models import SessionStatus

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Longest wait, in seconds, for one session's check in the list; a slower one shows as an error.
CHECK_TIMEOUT = 8.0
#: Most session checks in flight at once for one list.
MAX_CONCURRENT_CHECKS = 16
#: Longest wait, in seconds, for one action (QR, pairing code, create, restart, rotate, delete).
ACTION_TIMEOUT = 30.0
#: Tries to save a rotated key in its connection, and the wait before the second (doubled each time).
SAVE_KEY_ATTEMPTS = 4
SAVE_KEY_FIRST_DELAY = 0.5


class ConsoleError(Exception):
    """
    A failed console request, answered as ``{"error", "requestId", "connId"}`` JSON.

    :param status_code: The HTTP status of the answer.
    :param message: What went wrong, fit to show a user (no key, no password).
    :param conn_id: The connection concerned.
    :param request_id: The service's ``requestId``, when it gave one.
    """

    def __init__(self, status_code: int, message: str, conn_id: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.conn_id = conn_id
        self.request_id = request_id


class RestartBody(BaseModel):
    """The body of ``POST .../restart``."""

    model_config = ConfigDict(extra="forbid")

    wipe: bool = False


class PairingCodeBody(BaseModel):
    """The body of ``POST .../pairing-code``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    phone_number: str = Field(alias="phoneNumber", min_length=1, max_length=32)


# --- Connections in the metadata database ---------------------------------------------------------


@dataclass(frozen=True)
class StoredConnection:
    """
    A ``whatsinfinity`` connection in the metadata database, read or not.

    :param conn_id: Its connection ID.
    :param team_name: Its team, where Airflow has teams.
    :param connection: The connection, ``None`` when it could not be read.
    :param unreadable: Why it could not be read (an exception's type: its text may quote a secret).
    """

    conn_id: str
    team_name: str | None
    connection: Connection | None = None
    unreadable: str | None = None


def _stored_connections(conn_id: str | None = None) -> list[StoredConnection]:
    """
    Return the ``whatsinfinity`` connections in the metadata database (only ``conn_id`` if given).

    Each is read on its own: one that cannot be read (a password encrypted with another Fernet key)
    is returned with the reason, and does not hide the others.
    """
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    team_column = getattr(Connection, "team_name", None)
    columns = [Connection.conn_id] if team_column is None else [Connection.conn_id, team_column]
    query = select(*columns).where(Connection.conn_type == CONN_TYPE)
    if conn_id is not None:
        query = query.where(Connection.conn_id == conn_id)
    stored = []
    with create_session() as session:
        ids = [
            (row[0], row[1] if len(row) > 1 else None)
            for row in session.execute(query.order_by(Connection.conn_id))
        ]
        for each_id, team_name in ids:
            try:
                connection = session.scalar(select(Connection).where(Connection.conn_id == each_id))
                if connection is None:  # deleted meanwhile
                    continue
                # Decrypt now (it happens on access) so that a bad password or extra shows here.
                _ = (connection.password, connection.extra)
                session.expunge(connection)
                stored.append(StoredConnection(each_id, team_name, connection=connection))
            except Exception as error:
                session.rollback()
                log.warning(
                    "WhatsInfinity console: cannot read connection %r: %s", each_id, type(error).__name__
                )
                stored.append(StoredConnection(each_id, team_name, unreadable=type(error).__name__))
    return stored


def _team_of(conn_id: str | None) -> str | None:
    """Return a connection's team, where Airflow has teams and the connection is stored."""
    from airflow.models.connection import Connection

    if conn_id is None or not hasattr(Connection, "get_team_name"):
        return None
    team: str | None = Connection.get_team_name(conn_id)
    return team


def _connection_details(conn_id: str | None, team_name: str | None) -> Any:
    """Return Airflow's ``ConnectionDetails`` for an authorization check, with the team where it has teams."""
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    if "team_name" in {field.name for field in fields(ConnectionDetails)}:
        return ConnectionDetails(conn_id=conn_id, team_name=team_name)
    return ConnectionDetails(conn_id=conn_id)


def _readable_by(user: Any, stored: list[StoredConnection]) -> list[StoredConnection]:
    """Return the connections the user may read, as Airflow's own connection list decides."""
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    if hasattr(manager, "get_authorized_connections"):  # Airflow 3.2+, team-aware, one query
        allowed = manager.get_authorized_connections(user=user, method="GET")
        return [each for each in stored if each.conn_id in allowed]
    return [
        each
        for each in stored
        if manager.is_authorized_connection(
            method="GET", details=_connection_details(each.conn_id, each.team_name), user=user
        )
    ]


def _save_key(conn_id: str, api_key: str) -> None:
    """Write a session's new API key into its connection's password."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        connection = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if connection is None:
            raise LookupError(f"connection {conn_id!r} is gone")
        connection.password = api_key


async def _save_rotated_key(conn_id: str, api_key: str) -> None:
    """
    Write a rotated key into its connection, trying again on a failure that may pass.

    The service no longer takes the old key, so a key not saved is a session nobody can use: a
    locked database or a dropped database connection is worth a few seconds of trying.
    A connection deleted meanwhile is not.

    :param conn_id: The connection to write to.
    :param api_key: The session's new key.
    """
    for attempt in range(1, SAVE_KEY_ATTEMPTS + 1):
        try:
            await asyncio.to_thread(_save_key, conn_id, api_key)
            return
        except LookupError:
            raise
        except Exception as error:
            if attempt == SAVE_KEY_ATTEMPTS:
                raise
            log.warning(
                "WhatsInfinity console: saving the rotated key in %r failed (%s), trying again",
                conn_id,
                type(error).__name__,
            )
            await asyncio.sleep(SAVE_KEY_FIRST_DELAY * 2 ** (attempt - 1))


async def _connection(conn_id: str) -> Connection:
    """Return a stored ``whatsinfinity`` connection, or answer 404 (500 when it cannot be read)."""
    try:
        rows = await asyncio.to_thread(_stored_connections, conn_id)
    except Exception as error:
        log.warning("WhatsInfinity console: cannot read connections: %s", type(error).__name__)
        raise ConsoleError(
            503, f"Cannot read Airflow's connections: {type(error).__name__}", conn_id
        ) from None
    if not rows:
        raise ConsoleError(404, f"No WhatsInfinity connection {conn_id!r} in the metadata database", conn_id)
    if rows[0].connection is None:
        raise ConsoleError(500, f"Cannot read connection {conn_id!r}: {rows[0].unreadable}", conn_id)
    return rows[0].connection


# --- Secrets kept out of answers ------------------------------------------------------------------


def _query_of(url: str) -> str:
    """Return what follows the first ``?`` or ``#`` after a URL's host ("" if nothing does)."""
    after_host = url.partition("://")[2].rsplit("@", 1)[-1] if "://" in url else url.rsplit("@", 1)[-1]
    cut = min((i for i in (after_host.find("?"), after_host.find("#")) if i >= 0), default=-1)
    return after_host[cut:] if cut >= 0 else ""


def _secrets_of(connection: Connection) -> list[str]:
    """Return the secrets a connection holds: its API key, any password and any query in its host URL."""
    host = (connection.host or "").strip()
    secrets = [(connection.password or "").strip()]
    try:
        password = urlsplit(host).password
    except ValueError:
        password = None
    if password:
        secrets += [password, unquote(password)]
    # A base URL has no business with a query string: one there may hold a token (``?key=...``).
    query = _query_of(host)
    if len(query) > 1:
        secrets += [query[1:], unquote(query[1:])]
    return [secret for secret in secrets if secret]


def _scrub(text: str, secrets: list[str]) -> str:
    """Return ``text`` without any of ``secrets`` nor anything Airflow's secret masker knows."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return redact(text)


def _shown_base_url(connection: Connection) -> str | None:
    """Return the connection's base URL without user name or password, or ``None`` if it has none valid."""
    try:
        shown = redact_url(base_url_of(connection))
    except WhatsInfinityError:
        return None
    query = _query_of(shown)
    return shown[: -len(query)] if query else shown


# --- Clients ---------------------------------------------------------------------------------------


def _client(connection: Connection, timeout: float) -> AsyncWhatsInfinityClient:
    """Build an asyncio client from a connection: one attempt per call, no waiting out rate limits."""
    hook = WhatsInfinityHook(connection.conn_id, timeout=timeout, max_attempts=1, max_rate_limit_wait=0)
    return AsyncWhatsInfinityClient(**hook._client_params(connection))


def _what_went_wrong(error: WhatsInfinityError) -> str:
    """Return a short text naming the kind of failure, then the service's message and ``requestId``."""
    kinds: list[tuple[type[WhatsInfinityError], str]] = [
        (SessionNotFoundError, "session not found"),
        (AuthenticationError, "wrong API key"),
        (ServiceUnreachableError, "unreachable"),
        (ValidationError, "connection not usable"),
    ]
    for kind, words in kinds:
        if isinstance(error, kind):
            return f"{words}: {error}"
    return str(error)


def _status_code_of(error: WhatsInfinityError) -> int:
    """Return the HTTP status that answers a failed action."""
    if isinstance(error, ValidationError):
        return 400
    if isinstance(error, SessionNotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, RateLimitedError):
        return 429
    if isinstance(error, ServiceUnreachableError):
        return 504
    return 502  # the service refused or failed: a wrong key is the service's answer, not the user's


async def _act(
    name: str, conn_id: str, action: Callable[[AsyncWhatsInfinityClient], Awaitable[T]]
) -> tuple[T, Connection]:
    """
    Run one action on a connection's session and return its result with the connection.

    :param name: The action, for the log.
    :param conn_id: The connection whose session to act on.
    :param action: What to do with a client built from the connection.

    Every failure becomes a :class:`ConsoleError` whose message is cleaned of the connection's secrets.
    """
    connection = await _connection(conn_id)
    secrets = _secrets_of(connection)
    try:
        client = _client(connection, ACTION_TIMEOUT)
        async with client:
            result = await asyncio.wait_for(action(client), ACTION_TIMEOUT + 5)
    except WhatsInfinityError as error:
        message = _scrub(_what_went_wrong(error), secrets)
        raise ConsoleError(_status_code_of(error), message, conn_id, error.request_id) from None
    except TimeoutError:
        raise ConsoleError(
            504, f"WhatsInfinity did not answer within {ACTION_TIMEOUT:g} s", conn_id
        ) from None
    except Exception as error:
        # Only the type: the text of an unexpected error may quote the key or a URL's password.
        log.warning("WhatsInfinity console: %s failed on %r: %s", name, conn_id, type(error).__name__)
        raise ConsoleError(500, f"Unexpected error: {type(error).__name__}", conn_id) from None
    return result, connection


# --- Rows of the list ------------------------------------------------------------------------------


def _status_json(status: SessionStatus) -> dict[str, Any]:
    """Return a session status with the console's keys."""
    return {
        "sessionId": status.session_id,
        "status": status.status,
        "isReady": status.is_ready,
        "hasQR": status.has_qr,
        "queueSize": status.queue_size,
        "rateLimitRemaining": status.rate_limit_remaining,
        "lastActiveAt": status.last_active_at,
        "warning": status.warning,
    }


async def _row(stored: StoredConnection, slots: asyncio.Semaphore) -> dict[str, Any]:
    """Check one connection's session; any failure is told in the row's ``error``, never raised."""
    row: dict[str, Any] = {
        "connId": stored.conn_id,
        "baseUrl": None,
        "sessionId": None,
        "status": None,
        "isReady": False,
        "hasQR": False,
        "queueSize": None,
        "rateLimitRemaining": None,
        "lastActiveAt": None,
        "warning": None,
        "error": None,
    }
    connection = stored.connection
    if connection is None:
        row["error"] = f"cannot read the connection from Airflow's database: {stored.unreadable}"
        return row
    row["baseUrl"] = _shown_base_url(connection)
    row["sessionId"] = (connection.login or "").strip() or None
    secrets = _secrets_of(connection)
    try:
        async with slots:
            client = _client(connection, CHECK_TIMEOUT)
            async with client:
                status = await asyncio.wait_for(client.check_session(), CHECK_TIMEOUT)
        row.update(_status_json(status))
    except WhatsInfinityError as error:
        row["error"] = _scrub(_what_went_wrong(error), secrets)
    except TimeoutError:
        row["error"] = f"unreachable: no answer within {CHECK_TIMEOUT:g} s"
    except Exception as error:
        row["error"] = f"cannot check the session: {type(error).__name__}"
    if row["warning"]:
        row["warning"] = _scrub(str(row["warning"]), secrets)
    return row


# --- The app ---------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """Return the console's FastAPI app, its every endpoint behind Airflow's auth dependencies."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user, requires_access_connection

    # The path parameter is named ``connection_id`` so that Airflow's check sees which connection.
    can_read = [Depends(requires_access_connection(method="GET"))]

    async def may_edit_the_connection(request: Request, user: Any = Depends(get_user)) -> None:  # noqa: B008
        # As Airflow's requires_access_connection("PUT"), which on 3.2+ would read the team from a
        # JSON body (answering 400 to a body-less QR request) when Airflow runs with teams.
        conn_id = request.path_params.get("connection_id")
        stored = await asyncio.to_thread(_team_of, conn_id)
        details = _connection_details(conn_id, stored)
        if not get_auth_manager().is_authorized_connection(method="PUT", details=details, user=user):
            raise StarletteHTTPException(403, "Forbidden")

    # Changes also refuse what another site may have forged in a signed-in user's browser.
    can_edit = [Depends(may_edit_the_connection), Depends(refuse_cross_site)]
    app = FastAPI(
        title="WhatsInfinity sessions",
        description="The sessions of the WhatsInfinity connections stored in Airflow.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.add_middleware(TokenCookieAsBearer)

    @app.exception_handler(StarletteHTTPException)
    async def not_signed_in(request: Request, error: StarletteHTTPException) -> Response:
        # The page, asked for without a valid token (401, or 403 "Invalid JWT token"), signs in;
        # the JSON API answers as Airflow's own does.
        if is_page(request) and (error.status_code == 401 or "token" in str(error.detail).lower()):
            return render_sign_in(request)
        return await http_exception_handler(request, error)

    @app.exception_handler(CrossSiteRequestError)
    async def cross_site(request: Request, error: CrossSiteRequestError) -> JSONResponse:
        body = {"error": f"Forbidden: {error}", "requestId": None, "connId": None}
        return JSONResponse(body, status_code=403)

    @app.exception_handler(ConsoleError)
    async def console_error(request: Request, error: ConsoleError) -> JSONResponse:
        body = {"error": error.message, "requestId": error.request_id, "connId": error.conn_id}
        return JSONResponse(body, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # Where and what, never the input itself: FastAPI's own answer would echo it.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem.get('loc', ())[1:]) or 'body'}: {problem.get('msg')}"
            for problem in error.errors()
        )
        body = {
            "error": f"Bad request: {problems}",
            "requestId": None,
            "connId": request.path_params.get("connection_id"),
        }
        return JSONResponse(body, status_code=422)

    @app.get("/", dependencies=can_read, include_in_schema=False)
    async def page(request: Request, user: Any = Depends(get_user)) -> Response:  # noqa: B008
        """The console: every session's status, refreshed, with the QR and the actions for editors."""
        can_change = get_auth_manager().is_authorized_connection(method="PUT", user=user)
        return render_console(
            request, user.get_name(), bool(can_change), api_base=request.url_for("list_sessions").path
        )

    @app.get("/api/sessions", dependencies=can_read)
    async def list_sessions(user: Any = Depends(get_user)) -> list[dict[str, Any]]:  # noqa: B008
        """List every ``whatsinfinity`` connection the user may read, with its session's status."""
        try:
            stored = await asyncio.to_thread(_stored_connections)
            stored = await asyncio.to_thread(_readable_by, user, stored)
        except Exception as error:
            log.warning("WhatsInfinity console: cannot list connections: %s", type(error).__name__)
            raise ConsoleError(
                503, f"Cannot read Airflow's connections: {type(error).__name__}", ""
            ) from None
        slots = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)
        return list(await asyncio.gather(*(_row(each, slots) for each in stored)))

    @app.get("/api/sessions/{connection_id}/qr", dependencies=can_edit)
    async def qr(connection_id: str) -> Response:
        """Answer the session's current QR code as a PNG."""
        png, _ = await _act("get_qr", connection_id, lambda client: client.get_qr())
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/api/sessions/{connection_id}/create", dependencies=can_edit)
    async def create(connection_id: str) -> dict[str, Any]:
        """Create the session on the service with the connection's key."""
        status, _ = await _act("create_session", connection_id, lambda client: client.create_session())
        return {"connId": connection_id, **_status_json(status)}

    @app.post("/api/sessions/{connection_id}/restart", dependencies=can_edit)
    async def restart(connection_id: str, body: RestartBody) -> dict[str, Any]:
        """Restart the session; ``wipe`` also forgets its link."""
        status, _ = await _act(
            "restart_session", connection_id, lambda client: client.restart_session(wipe=body.wipe)
        )
        return {"connId": connection_id, **_status_json(status)}

    @app.post("/api/sessions/{connection_id}/pairing-code", dependencies=can_edit)
    async def pairing_code(connection_id: str, body: PairingCodeBody) -> dict[str, Any]:
        """Ask for a pairing code for the phone number."""
        code, _ = await _act(
            "request_pairing_code",
            connection_id,
            lambda client: client.request_pairing_code(body.phone_number),
        )
        return {"connId": connection_id, "pairingCode": code}

    @app.post("/api/sessions/{connection_id}/rotate-key", dependencies=can_edit)
    async def rotate_key(connection_id: str) -> dict[str, Any]:
        """Give the session a new key and store it in the connection; the answer never holds the key."""
        new_key, _ = await _act("rotate_key", connection_id, lambda client: client.rotate_key())
        mask_secret(new_key)
        try:
            await _save_rotated_key(connection_id, new_key)
        except Exception as error:
            log.error(
                "WhatsInfinity console: rotated key not saved in %r: %s", connection_id, type(error).__name__
            )
            raise ConsoleError(
                500,
                f"The session's key was changed but could not be saved in connection {connection_id!r} "
                f"({type(error).__name__}), and the old key no longer works. Give the connection a new "
                "session ID, then Create and link that session.",
                connection_id,
            ) from None
        return {"connId": connection_id, "rotated": True}

    @app.post("/api/sessions/{connection_id}/delete", dependencies=can_edit)
    async def delete(connection_id: str) -> dict[str, Any]:
        """Delete the session on the service (the Airflow connection stays)."""
        await _act("delete_session", connection_id, lambda client: client.delete_session())
        return {"connId": connection_id, "deleted": True}

    return app
