"""
Serve the emulator with uvicorn.

In a background thread of this process (:func:`run_emulator`), or in the foreground from the command
line (:mod:`.cli`, through :func:`uvicorn_config`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from airflow_provider_whatsinfinity.emulator.app import EmulatorApp
from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig
from airflow_provider_whatsinfinity.emulator.control import EmulatorControl
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


class RunningEmulator(EmulatorControl):
    """
    An emulator serving from a thread of this process.

    Its URL, its settings, and the helpers of :class:`~.control.EmulatorControl` (``create_session``,
    ``link``, ``outbox``, ``add_fault``, ...). :func:`run_emulator` starts one, and the
    ``whatsinfinity_emulator`` pytest fixture yields one.

    :param url: Base URL of the emulated service, such as ``http://127.0.0.1:8765``.
    :param config: The settings it runs with.
    """

    def __init__(self, url: str, config: EmulatorConfig) -> None:
        super().__init__(url)
        self.config = config


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
