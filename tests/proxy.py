"""
A misbehaving reverse proxy in front of the emulator, over real HTTP on loopback.

It forwards every request to the emulator and passes the answer back, unless told otherwise for a
path: ``lose_answer`` forwards the request (the service acts on it) and then answers a plain-text
503, as a proxy whose upstream reset before the headers came back; ``refuse`` answers that 503
without forwarding anything; ``answer`` gives any canned answer without forwarding.
"""

from __future__ import annotations

import http.server
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

PLAIN_503 = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"


class Proxy:
    """
    The proxy's URL and what it does per path.

    :param upstream: The emulator's URL.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        #: path -> (forward the request?, the canned answer's status, body and content type)
        self.modes: dict[str, tuple[bool, int, bytes, str]] = {}
        self.forwarded: list[str] = []
        self.url = ""

    def lose_answer(self, path: str) -> None:
        """Forward requests to ``path``, then answer a plain 503 instead of the service's answer."""
        self.modes[path] = (True, 503, PLAIN_503, "text/plain")

    def refuse(self, path: str) -> None:
        """Answer requests to ``path`` with a plain 503 and forward nothing."""
        self.modes[path] = (False, 503, PLAIN_503, "text/plain")

    def answer(self, path: str, status: int, body: bytes, content_type: str = "application/json") -> None:
        """Answer requests to ``path`` with this, forwarding nothing (a captive portal, a gateway)."""
        self.modes[path] = (False, status, body, content_type)

    def behave(self) -> None:
        """Forward everything faithfully again."""
        self.modes.clear()


def _handler(proxy: Proxy, client: httpx.Client) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            mode = next((m for p, m in proxy.modes.items() if self.path.startswith(p)), None)
            if mode is None or mode[0]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                answer = client.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                proxy.forwarded.append(self.path)
            if mode is None:
                self._answer(answer.status_code, answer.content, answer.headers.get("content-type", ""))
            else:
                self._answer(*mode[1:])

        def _answer(self, status: int, content: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_DELETE = _any

    return Handler


@pytest.fixture
def proxy(whatsinfinity_emulator: RunningEmulator) -> Iterator[Proxy]:
    """A :class:`Proxy` on a free loopback port in front of the test's emulator."""
    state = Proxy(whatsinfinity_emulator.url)
    with httpx.Client(timeout=30) as client:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, client))
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield state
        finally:
            server.shutdown()
            server.server_close()
