"""The service's rate limit: so many sends per session in a fixed window that its first send opens."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from airflow_provider_whatsinfinity.emulator.model import ApiError

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.emulator.model import Session


class RateLimit:
    """
    ``limit`` sends per session per window of ``window`` seconds; each session keeps its own count.

    A window starts with the first send counted in it, never with a read, and ends ``window`` seconds
    later, whatever was sent in it: a fixed window, not a sliding one.

    :param limit: Sends allowed per window.
    :param window: The window's length in seconds.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window

    def remaining(self, session: Session) -> int:
        """Sends the session may still make in its current window. :param session: The session."""
        if session.window_start is None or time.monotonic() - session.window_start >= self.window:
            return self.limit
        return self.limit - session.window_count

    def refuse_if_spent(self, session: Session) -> None:
        """
        Open a new window if the last one ended, and refuse a send when this one is spent.

        :param session: The sending session.
        :raises ApiError: 429 with ``retryAfter``, the whole seconds until the window ends.
        """
        now = time.monotonic()
        if session.window_start is None or now - session.window_start >= self.window:
            session.window_start = now
            session.window_count = 0
        if session.window_count >= self.limit:
            retry_after = max(1, math.ceil(session.window_start + self.window - now))
            raise ApiError(
                429,
                "Rate limit exceeded",
                "Too many requests",
                extra={"retryAfter": retry_after},
                headers={"Retry-After": str(retry_after)},
            )

    def count(self, session: Session) -> None:
        """Count an accepted send against the session's window. :param session: The session."""
        session.window_count += 1
