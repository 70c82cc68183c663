"""The trigger behind the deferrable session-ready sensor."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_whatsinfinity.exceptions import WhatsInfinityError
from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_whatsinfinity.models import SessionStatus

#: How a wait for the session ended.
WaitOutcome = Literal["ready", "disabled", "timeout", "error"]


class SessionReadyEvent(TypedDict):
    """
    The payload of the trigger's one event: plain JSON, read by the sensor's ``execute_complete``.

    Versions up to 0.1 named ``outcome`` ``status``, which the session's own ``status`` also is; the
    sensor still reads such an event, left in the database by a wait deferred before an upgrade.
    """

    #: How the wait ended.
    outcome: WaitOutcome
    #: The last session status seen (``SessionStatus.to_dict()``), ``None`` before any answer.
    session: dict[str, Any] | None
    #: The error that ended the wait (``WhatsInfinityError.to_dict()``) when ``outcome`` is ``error``.
    error: dict[str, Any] | None


class WhatsInfinitySessionReadyTrigger(BaseTrigger):
    """
    Poll check-session with the async client until the session is ready, disabled, or out of time.

    Yields one event, a :class:`SessionReadyEvent`: ``{"outcome": "ready" | "disabled" | "timeout" |
    "error", "session": {...} | None, "error": {...} | None}``. Transient errors (the service
    unreachable, a server error) are logged and polled through; permanent ones (a wrong key, an
    unknown session) end the wait.

    :param whatsinfinity_conn_id: The WhatsInfinity connection to use.
    :param poke_interval: Seconds between two checks.
    :param timeout_at: Unix time after which the trigger gives up with a ``timeout`` event; ``None``
        waits for as long as Airflow lets it.
    """

    def __init__(
        self,
        whatsinfinity_conn_id: str = WhatsInfinityHook.default_conn_name,
        poke_interval: float = 30.0,
        timeout_at: float | None = None,
    ) -> None:
        super().__init__()
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.poke_interval = float(poke_interval)
        self.timeout_at = timeout_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and keyword arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "whatsinfinity_conn_id": self.whatsinfinity_conn_id,
                "poke_interval": self.poke_interval,
                "timeout_at": self.timeout_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check the session every ``poke_interval`` seconds and yield one event when the wait ends."""
        hook = WhatsInfinityHook(whatsinfinity_conn_id=self.whatsinfinity_conn_id)
        session: dict[str, Any] | None = None
        last_summary = ""
        try:
            while True:
                try:
                    status = await self._check(hook)
                except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
                    yield _event("timeout", session)
                    return
                except WhatsInfinityError as error:
                    if not error.transient:
                        yield _event("error", session, error.to_dict())
                        return
                    self.log.warning(
                        "Session check failed, trying again in %.0f s: %s", self.poke_interval, error
                    )
                else:
                    # One line per change, not per poll: a triggerer may hold hundreds of these.
                    summary = status.summary()
                    log = self.log.info if summary != last_summary else self.log.debug
                    log("WhatsInfinity %s", summary)
                    last_summary = summary
                    session = status.to_dict()
                    if status.is_ready or status.status == "disabled":
                        yield _event("ready" if status.is_ready else "disabled", session)
                        return
                if self.timeout_at is not None and time.time() >= self.timeout_at:
                    yield _event("timeout", session)
                    return
                pause = self.poke_interval
                if self.timeout_at is not None:
                    pause = max(0.0, min(pause, self.timeout_at - time.time()))
                await asyncio.sleep(pause)
        finally:
            await hook.aclose()

    async def _check(self, hook: WhatsInfinityHook) -> SessionStatus:
        """Check the session once, within the time left: a slow answer must not outlast the timeout."""
        if self.timeout_at is None:
            return await hook.acheck_session()
        left = self.timeout_at - time.time()
        if left <= 0:
            raise asyncio.TimeoutError
        # Not asyncio.wait_for: before Python 3.12 it can swallow the trigger's own cancellation when
        # the check finishes at that moment, and the trigger would then poll on forever. A read-only
        # call cancelled mid-flight changes nothing on the server.
        check = asyncio.ensure_future(hook.acheck_session())
        try:
            done, _ = await asyncio.wait({check}, timeout=left)
        finally:
            if not check.done():
                check.cancel()
        if not done:
            raise asyncio.TimeoutError
        return check.result()


def _event(
    outcome: WaitOutcome, session: dict[str, Any] | None, error: dict[str, Any] | None = None
) -> TriggerEvent:
    payload: SessionReadyEvent = {"outcome": outcome, "session": session, "error": error}
    return TriggerEvent(payload)
