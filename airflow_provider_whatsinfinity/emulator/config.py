"""Settings of one emulator instance; the command line and the pytest fixture both fill this in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class EmulatorConfig:
    """
    How an emulated WhatsInfinity service behaves.

    The defaults are the documented limits of the real service.

    :param rate_limit: Messages a session may send per rate window.
    :param rate_window: Length of a session's fixed rate window, in seconds.
    :param queue_max: Messages a session that is not connected may queue before sends get 503.
    :param qr_ttl: Seconds a QR code stays valid; ``GET /qr`` draws a new one after that.
    :param typing_delay: Seconds a ``typing: true`` message waits before it is delivered.
    :param connect_delay: Seconds a linked session spends in ``connecting`` after a restart.
    :param auto_link: Link every session this many seconds after it starts showing a QR, as if it had
        been scanned; ``None`` leaves linking to the control API.
    :param fetch_media: Download each media URL when it is sent, record its size and sha256, and fail
        the send with 400 when the download fails.
    :param fetch_timeout: Seconds allowed for one whole media download, however the bytes trickle in.
    :param fetch_max_bytes: Largest media file the emulator downloads.
    :param state_file: JSON file that keeps sessions, keys, queued and delivered messages across
        restarts, with a journal of recent changes beside it (``<state_file>.journal``); ``None``
        keeps everything in memory.
    :param max_body_bytes: Largest request body accepted; larger ones get 413.
    """

    rate_limit: int = 10
    rate_window: float = 60.0
    queue_max: int = 100
    qr_ttl: float = 60.0
    typing_delay: float = 1.0
    connect_delay: float = 1.0
    auto_link: float | None = None
    fetch_media: bool = False
    fetch_timeout: float = 10.0
    fetch_max_bytes: int = 100 * 1024 * 1024
    state_file: Path | None = None
    max_body_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        checks = {
            "rate_limit": self.rate_limit >= 1,
            "rate_window": self.rate_window > 0,
            "queue_max": self.queue_max >= 0,
            "qr_ttl": self.qr_ttl > 0,
            "typing_delay": self.typing_delay >= 0,
            "connect_delay": self.connect_delay >= 0,
            "auto_link": self.auto_link is None or self.auto_link >= 0,
            "fetch_timeout": self.fetch_timeout > 0,
            "fetch_max_bytes": self.fetch_max_bytes >= 1,
            "max_body_bytes": self.max_body_bytes >= 1024,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(f"Invalid emulator settings: {', '.join(wrong)} out of range")
