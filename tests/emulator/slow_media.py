"""A media server on loopback that trickles its file out one byte at a time, for fetch tests."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class SlowMedia:
    """Where the slow file is, and an event set once a download of it has started."""

    url: str
    size: int
    interval: float
    requested: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def slow_media_server(size: int, interval: float) -> Iterator[SlowMedia]:
    """Serve ``/slow.pdf``: ``size`` bytes, one every ``interval`` seconds (each read stays fast)."""
    media: SlowMedia | None = None

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert media is not None
            media.requested.set()
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                for _ in range(size):
                    self.wfile.write(b"x")
                    time.sleep(interval)
            except OSError:
                pass  # the emulator gave up on the download

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    media = SlowMedia(f"http://127.0.0.1:{server.server_address[1]}/slow.pdf", size, interval)
    try:
        yield media
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
