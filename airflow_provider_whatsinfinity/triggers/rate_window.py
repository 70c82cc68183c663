"""The trigger a deferrable send waits in until its sessions may send again."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class WhatsInfinityRateWindowTrigger(BaseTrigger):
    """
    Wait until a session's rate window resets (or its queue had time to drain), then fire once.

    Like the standard provider's ``DateTimeTrigger``, but the event carries a small ``state`` back to
    the task: Airflow resumes the task with the event, and ``dag.test()`` passes the event only (it
    drops the deferral's other ``kwargs``). The list and who was sent to stay in the task's delivery
    record; the state holds counters only, never a phone number, because the triggerer logs events.

    :param moment: When to fire: an ISO 8601 time with its zone.
    :param state: Counters the resumed send needs (idle deferrals, sends recorded); JSON.
    """

    def __init__(self, moment: str, state: dict[str, Any]) -> None:
        super().__init__()
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ValueError(f"moment must say its time zone (such as +00:00), not {moment!r}")
        self.moment = moment
        self.state = state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the trigger's class path and arguments."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"moment": self.moment, "state": self.state},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep until the moment, then fire once with the state."""
        moment = datetime.fromisoformat(self.moment)
        while (left := (moment - datetime.now(timezone.utc)).total_seconds()) > 0:
            await asyncio.sleep(min(left, 60.0))
        yield TriggerEvent({"state": self.state})
