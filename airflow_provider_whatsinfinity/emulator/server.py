"""Run the emulator: in a background thread for tests, or in the foreground from the command line."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from airflow_provider_whatsinfinity.emulator.app import EmulatorApp
from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig
from airflow_provider_whatsinfinity.emulator.faults import TRANSPORT_EXTENSION

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator

    from starlette.types import ASGIApp, Receive, Scope, Send

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional for uvicorn
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def _expose_transport(app: ASGIApp, transport: asyncio.Transport) -> ASGIApp:
    async def with_transport(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("extensions", {})[TRANSPORT_EXTENSION] = transport
        await app(scope, receive, send)

    return with_transport


class _H11WithTransport(H11Protocol):
    """uvicorn's h11 protocol, handing each request its connection so a fault can drop it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _expose_transport(self.app, transport)


if HttpToolsProtocol is not None:

    class _HttpToolsWithTransport(HttpToolsProtocol):
        """uvicorn's httptools protocol, handing each request its connection so a fault can drop it."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app = _expose_transport(self.app, transport)

    PROTOCOL: type[asyncio.Protocol] = _HttpToolsWithTransport
else:
    PROTOCOL = _H11WithTransport


def uvicorn_config(app: EmulatorApp, *, host: str, port: int, log_level: str) -> uvicorn.Config:
    """
    Return the uvicorn settings the emulator runs with.

    :param app: The emulator application.
    :param host: Interface to listen on.
    :param port: Port to listen on; 0 picks a free one.
    :param log_level: uvicorn's log level.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=PROTOCOL,
        log_level=log_level,
        lifespan="on",
        access_log=log_level == "debug",
        timeout_graceful_shutdown=2,
    )


class RunningEmulator:
    """
    A running emulator: its URL and a client for its control API.

    :param url: Base URL of the emulated service, such as ``http://127.0.0.1:8765``.
    :param config: The settings it runs with.
    """

    def __init__(self, url: str, config: EmulatorConfig) -> None:
        self.url = url
        self.config = config
        self._http = httpx.Client(base_url=url, timeout=30)

    def __repr__(self) -> str:
        return f"RunningEmulator(url={self.url!r})"

    def close(self) -> None:
        """Close the control client."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        body = response.json()
        if not body.get("success"):
            raise RuntimeError(f"{method} {path} failed with {response.status_code}: {body}")
        return body["data"]

    def create_session(
        self,
        session_id: str = "mysession",
        api_key: str = "your-session-api-key",
        *,
        link: bool = False,
    ) -> dict[str, Any]:
        """
        Create a session through the public API, and link it if asked.

        :param session_id: The session's ID.
        :param api_key: The session's API key.
        :param link: Link it at once, as if its QR had been scanned.
        """
        data: dict[str, Any] = self._call(
            "POST", "/create-session", json={"sessionId": session_id, "apiKey": api_key}
        )
        if link:
            data = self.link(session_id)
        return data

    def link(self, session_id: str = "mysession") -> dict[str, Any]:
        """Link a session as if its QR had been scanned; its queue is delivered before this returns."""
        data: dict[str, Any] = self._call("POST", f"/_emulator/sessions/{session_id}/link")
        return data

    def disconnect(self, session_id: str = "mysession") -> dict[str, Any]:
        """Drop a session's connection: sends queue until it is linked again."""
        data: dict[str, Any] = self._call("POST", f"/_emulator/sessions/{session_id}/disconnect")
        return data

    def disable(self, session_id: str = "mysession") -> dict[str, Any]:
        """Disable a session: sends get 409 until it is restarted."""
        data: dict[str, Any] = self._call("POST", f"/_emulator/sessions/{session_id}/disable")
        return data

    def set_warning(self, session_id: str = "mysession", warning: str | None = None) -> dict[str, Any]:
        """Set or clear the warning check-session shows. :param session_id: Session. :param warning: Text."""
        data: dict[str, Any] = self._call(
            "POST", f"/_emulator/sessions/{session_id}/warning", json={"warning": warning}
        )
        return data

    def mark_unregistered(self, *numbers: str) -> list[str]:
        """Make sends to these numbers fail with 422, as for numbers not on WhatsApp."""
        data = self._call("POST", "/_emulator/unregistered", json={"numbers": list(numbers)})
        return list(data["unregistered"])

    def outbox(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """
        Return the delivered messages in delivery order.

        :param session_id: Only this session's messages.
        """
        params = {"sessionId": session_id} if session_id else None
        return list(self._call("GET", "/_emulator/outbox", params=params)["messages"])

    def add_fault(self, path: str, mode: str, **options: Any) -> dict[str, Any]:
        """
        Inject a fault; see :class:`~airflow_provider_whatsinfinity.emulator.faults.Fault`.

        :param path: Request path, such as ``/send``.
        :param mode: ``status``, ``drop``, ``delay`` or ``after``.
        :param options: ``status``, ``seconds``, ``then``, ``times``, ``rate``, ``method``,
            ``retryAfter`` or ``seed``.
        """
        data: dict[str, Any] = self._call(
            "POST", "/_emulator/faults", json={"path": path, "mode": mode, **options}
        )
        return data

    def faults(self) -> list[dict[str, Any]]:
        """Return the active faults with how often each matched and fired."""
        return list(self._call("GET", "/_emulator/faults")["faults"])

    def clear_faults(self) -> None:
        """Stop injecting faults."""
        self._call("DELETE", "/_emulator/faults")

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """
        Return the API requests seen (control requests excluded), oldest first.

        :param path: Only requests to this path.
        """
        seen = self._call("GET", "/_emulator/requests")["requests"]
        return [r for r in seen if path is None or r["path"] == path]

    def reset(self) -> None:
        """Forget every session, message, fault and request; requests still in flight change nothing."""
        self._call("POST", "/_emulator/reset")


def _free_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    **settings: Any,
) -> Iterator[RunningEmulator]:
    """
    Run an emulator in a background thread for as long as the ``with`` block lasts.

    .. code-block:: python

        with run_emulator(rate_limit=3, rate_window=2) as emulator:
            emulator.create_session("mysession", "your-session-api-key", link=True)
            ...  # point a connection at emulator.url
            assert len(emulator.outbox()) == 1

    :param config: Settings; keyword ``settings`` override single fields of it.
    :param host: Interface to listen on.
    :param port: Port to listen on; 0 (the default) picks a free one.
    :param log_level: uvicorn's log level.
    :param settings: Fields of :class:`EmulatorConfig`, such as ``rate_limit=3``.
    """
    config = EmulatorConfig(**{**vars(config or EmulatorConfig()), **settings})
    sock = _free_socket(host, port)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn_config(EmulatorApp(config), host=host, port=bound_port, log_level=log_level)
    )
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"whatsinfinity-emulator-{bound_port}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"The WhatsInfinity emulator did not start on {host}:{bound_port}")
        time.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    running = RunningEmulator(f"http://{url_host}:{bound_port}", config)
    try:
        yield running
    finally:
        running.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
