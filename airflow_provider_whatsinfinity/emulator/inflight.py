"""
What a reset cuts off: requests that arrived before it, and background work under way.

A test resets the shared emulator before it starts. A request of the previous test may still be
waiting then (on a delay fault, a typing pause, a media download), and background work may be under
way (an auto-link, a reconnect, the delivery of a queue). Neither may change the world that replaced
the one it started in, or the test would find the previous test's message in its outbox.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity.emulator.model import ApiError

if TYPE_CHECKING:
    from collections.abc import Coroutine


class InFlight:
    """
    The reset generation that requests note on arrival, and the background tasks a reset cancels.

    Runs on the server's event loop, like the rest of the emulated service.
    """

    def __init__(self) -> None:
        #: Counts resets. A request notes it when it arrives, and changes nothing once it has moved on.
        self.generation = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def ensure_current(self, generation: int) -> None:
        """
        Refuse a request that started before the last reset.

        :param generation: :attr:`generation` when the request arrived.
        :raises ApiError: 409, the request was cut off by a reset.
        """
        if generation != self.generation:
            raise ApiError(
                409,
                "Conflict",
                "The emulator was reset while this request was in flight; it was dropped and changed nothing",
            )

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work that a reset or shutdown cancels. :param work: The coroutine."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cut_off(self) -> None:
        """Start a new generation and cancel the background work: what a reset does first."""
        self.generation += 1
        self.cancel()
        self._tasks.clear()

    def cancel(self) -> None:
        """Cancel the background work, as at shutdown."""
        for task in self._tasks:
            task.cancel()
