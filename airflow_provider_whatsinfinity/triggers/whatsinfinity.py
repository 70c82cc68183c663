"""
The session's triggers: one behind the deferrable session-ready sensor, one for event-driven DAGs.

``WhatsInfinitySessionReadyTrigger`` waits once and ends; ``WhatsInfinitySessionEventTrigger`` runs
for as long as a DAG's ``AssetWatcher`` needs it and yields an event at each change of the session's
health (:class:`SessionChangeDetector` decides what a change is).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_whatsinfinity.exceptions import WhatsInfinityError
from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
from airflow_provider_whatsinfinity.triggers.shared_check import SharedSessionCheck

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

    from airflow_provider_whatsinfinity.models import SessionStatus
    from airflow_provider_whatsinfinity.triggers.shared_check import CheckAnswer

T = TypeVar("T")

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

    Triggers in one triggerer waiting on the same session with the same key share their checks
    (:mod:`~airflow_provider_whatsinfinity.triggers.shared_check`): one request per session per
    interval, whatever the number of sensors, and no answer older than a trigger's ``poke_interval``.

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
        check = SharedSessionCheck(hook)
        session: dict[str, Any] | None = None
        last_summary = ""
        try:
            while True:
                pause = self.poke_interval
                try:
                    answer = await self._check(check)
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
                    status = answer.status
                    # One line per change, not per poll: a triggerer may hold hundreds of these.
                    summary = status.summary()
                    log = self.log.info if summary != last_summary else self.log.debug
                    log("WhatsInfinity %s", summary)
                    last_summary = summary
                    session = status.to_dict()
                    if status.is_ready or status.status == "disabled":
                        yield _event("ready" if status.is_ready else "disabled", session)
                        return
                    # Again when this answer turns poke_interval old: it may be another trigger's.
                    pause = answer.fresh_for(self.poke_interval)
                if self.timeout_at is not None and time.time() >= self.timeout_at:
                    yield _event("timeout", session)
                    return
                if self.timeout_at is not None:
                    pause = max(0.0, min(pause, self.timeout_at - time.time()))
                await asyncio.sleep(pause)
        finally:
            await check.aclose()
            await hook.aclose()

    async def _check(self, check: SharedSessionCheck) -> CheckAnswer:
        """Check the session once, within the time left: a slow answer must not outlast the timeout."""
        if self.timeout_at is None:
            return await check.status(max_age=self.poke_interval)
        left = self.timeout_at - time.time()
        if left <= 0:
            raise asyncio.TimeoutError
        done = await _within(check.status(max_age=self.poke_interval), left)
        if done is None:
            raise asyncio.TimeoutError
        return done.result()


async def _check_within(hook: WhatsInfinityHook, seconds: float) -> asyncio.Future[SessionStatus] | None:
    """Check the session with the hook's own client, giving up after ``seconds`` (see :func:`_within`)."""
    return await _within(hook.acheck_session(), seconds)


async def _within(checking: Coroutine[Any, Any, T], seconds: float) -> asyncio.Future[T] | None:
    """
    Run a session check, giving up after ``seconds``: the finished check, or ``None`` if it took longer.

    Not ``asyncio.wait_for``: before Python 3.12 it can swallow the trigger's own cancellation when the
    check finishes at that moment, and the trigger would then poll on forever. A read-only call
    cancelled mid-flight changes nothing on the server.
    """
    check = asyncio.ensure_future(checking)
    try:
        done, _ = await asyncio.wait({check}, timeout=seconds)
    finally:
        if not check.done():
            check.cancel()
    return check if done else None


def _event(
    outcome: WaitOutcome, session: dict[str, Any] | None, error: dict[str, Any] | None = None
) -> TriggerEvent:
    payload: SessionReadyEvent = {"outcome": outcome, "session": session, "error": error}
    return TriggerEvent(payload)


# --- Health events for event-driven scheduling ---------------------------------------------------

#: Statuses of a session that is not ready but may become so (dropped, reconnecting, waiting for a
#: link): moving between them is not news to a DAG; leaving ready for one, or reaching ready, is.
NOT_READY_STATUSES = frozenset({"disconnected", "connecting", "qr", "pairing"})

#: Why an event fired, as it appears in the event's ``reasons``.
ChangeReason = Literal["status", "ready", "error", "warning", "queue_size"]


@dataclass(frozen=True)
class SessionHealth:
    """
    What the event trigger compares from one check to the next: plain JSON through :meth:`to_dict`.

    :param status: The session's status, or ``"error"`` when the service refused the check for good
        (a wrong key, an unknown session).
    :param is_ready: Whether the session could send.
    :param warning: The service's warning, if any.
    :param queue_size: Messages queued for delivery, when the service said.
    :param error: The refusal (``WhatsInfinityError.to_dict()``, never the key) when ``status`` is
        ``"error"``.
    """

    status: str
    is_ready: bool = False
    warning: str | None = None
    queue_size: int | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def of_session(cls, status: SessionStatus) -> SessionHealth:
        """
        Return the health a session check reported.

        :param status: The check's answer.
        """
        return cls(status.status, status.is_ready, status.warning or None, status.queue_size)

    @classmethod
    def of_error(cls, error: WhatsInfinityError) -> SessionHealth:
        """
        Return the health of a session the service refuses to report on (a permanent error).

        :param error: The error the check raised.
        """
        return cls("error", error=error.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Return the health as a JSON-safe dict."""
        return asdict(self)


def session_change_reasons(
    old: SessionHealth | None, new: SessionHealth, queue_size_threshold: int | None = None
) -> list[ChangeReason]:
    """
    Return why going from ``old`` to ``new`` is news to a DAG; an empty list when it is not.

    - ``status``: the status changed, unless both are states of a session on its way back to ready
      (disconnected, connecting, qr, pairing): a restart going disconnected, connecting, qr is one
      outage, not three. Ready to disconnected, qr or disabled, and back, all count; so do disabled
      and ``"error"``, coming and going.
    - ``ready``: readiness flipped while the status stayed the same.
    - ``error``: the service began refusing the check for good, or refuses for another reason.
    - ``warning``: a warning appeared or changed (one that clears is not news; its return is).
    - ``queue_size``: the queue reached ``queue_size_threshold`` from below.

    A state that persists gives no reason, so a DAG runs once per change, not once per check.

    :param old: The previous health; ``None`` for the first check, which is a baseline, never news.
    :param new: The health just checked.
    :param queue_size_threshold: The queue size that is news when reached; ``None`` ignores the queue.
    """
    if old is None:
        return []
    reasons: list[ChangeReason] = []
    if old.status != new.status:
        if not (old.status in NOT_READY_STATUSES and new.status in NOT_READY_STATUSES):
            reasons.append("status")
    elif old.is_ready != new.is_ready:
        reasons.append("ready")
    if new.error is not None and (old.error or {}).get("type") != new.error.get("type"):
        reasons.append("error")
    if new.warning and new.warning != old.warning:
        reasons.append("warning")
    if (
        queue_size_threshold is not None
        and new.queue_size is not None
        and new.queue_size >= queue_size_threshold
        and (old.queue_size is None or old.queue_size < queue_size_threshold)
    ):
        reasons.append("queue_size")
    return reasons


class SessionChangeEvent(TypedDict):
    """The payload of each event of :class:`WhatsInfinitySessionEventTrigger`: plain JSON."""

    #: Why the event fired, in the order of :func:`session_change_reasons`.
    reasons: list[ChangeReason]
    #: The health before the change (``SessionHealth.to_dict()``).
    old: dict[str, Any]
    #: The health after it.
    new: dict[str, Any]


class SessionChangeDetector:
    """
    Remember the last health seen and tell which new one is a change: the event trigger's memory.

    :param queue_size_threshold: The queue size that is news when reached; ``None`` ignores the queue.
    """

    def __init__(self, queue_size_threshold: int | None = None) -> None:
        self.queue_size_threshold = queue_size_threshold
        #: The last health seen; ``None`` until the first check, the baseline.
        self.last: SessionHealth | None = None

    def observe(self, health: SessionHealth) -> SessionChangeEvent | None:
        """
        Record a check's health and return the event it makes, or ``None`` when it is no news.

        Every health becomes the new baseline, news or not: a move from disconnected to qr, for
        instance, is remembered so that the following change is measured from it.

        :param health: The health just checked.
        """
        old, self.last = self.last, health
        reasons = session_change_reasons(old, health, self.queue_size_threshold)
        if old is None or not reasons:
            return None
        return {"reasons": reasons, "old": old.to_dict(), "new": health.to_dict()}


class WhatsInfinitySessionEventTrigger(BaseEventTrigger):
    """
    Watch the session for an ``AssetWatcher`` and yield one event per change of its health.

    Checks the session every ``poll_interval`` seconds with the async client. The first check is a
    baseline and yields nothing; after it, an event (a :class:`SessionChangeEvent`:
    ``{"reasons": [...], "old": {...}, "new": {...}}``) fires only when
    :func:`session_change_reasons` finds news: the status leaves or returns to ready (disconnected,
    qr, disabled), a warning appears or changes, the queue reaches ``queue_size_threshold``, or the
    service starts refusing the check for good (a wrong key, an unknown session: status ``"error"``).
    A state that persists fires nothing more. Transient errors (the service unreachable, a server
    error, a check slower than :attr:`check_timeout`) are logged and polled through; they are not a
    change.

    The trigger keeps no state across restarts: when the triggerer restarts it (a new triggerer, a
    redeployment), the first check is a fresh baseline, and a change that happened while no trigger
    ran is not reported. A DAG that must not miss one checks the session itself when it starts.

    Its arguments cannot be templated (it runs in the triggerer, outside any DAG run): name the
    connection directly.

    :param whatsinfinity_conn_id: The WhatsInfinity connection to use.
    :param poll_interval: Seconds between two checks.
    :param queue_size_threshold: The queue size that fires an event when reached from below;
        ``None`` ignores the queue.
    """

    #: Most seconds one check may take before it counts as a transient error.
    check_timeout: float = 60.0

    def __init__(
        self,
        whatsinfinity_conn_id: str = WhatsInfinityHook.default_conn_name,
        poll_interval: float = 60.0,
        queue_size_threshold: int | None = None,
    ) -> None:
        super().__init__()
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.poll_interval = float(poll_interval)
        self.queue_size_threshold = None if queue_size_threshold is None else int(queue_size_threshold)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and keyword arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "whatsinfinity_conn_id": self.whatsinfinity_conn_id,
                "poll_interval": self.poll_interval,
                "queue_size_threshold": self.queue_size_threshold,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check the session every ``poll_interval`` seconds, forever; yield an event at each change."""
        detector = SessionChangeDetector(self.queue_size_threshold)
        hook = WhatsInfinityHook(whatsinfinity_conn_id=self.whatsinfinity_conn_id)
        try:
            while True:
                health = await self._health(hook)
                if health is not None:
                    if health.error is not None:
                        # The connection may be fixed meanwhile (a new key): read it again next time.
                        await hook.aclose()
                        hook = WhatsInfinityHook(whatsinfinity_conn_id=self.whatsinfinity_conn_id)
                    first = detector.last is None
                    change = detector.observe(health)
                    if first:
                        self.log.info("WhatsInfinity session health baseline: %s", health.to_dict())
                    if change is not None:
                        self.log.info(
                            "WhatsInfinity session changed (%s): %s -> %s",
                            ", ".join(change["reasons"]),
                            change["old"],
                            change["new"],
                        )
                        yield TriggerEvent(change)
                await asyncio.sleep(self.poll_interval)
        finally:
            await hook.aclose()

    async def _health(self, hook: WhatsInfinityHook) -> SessionHealth | None:
        """Check the session once: its health, or ``None`` after a transient error (logged)."""
        check = await _check_within(hook, self.check_timeout)
        if check is None:
            self.log.warning("Session check took over %.0f s; checking again later", self.check_timeout)
            return None
        try:
            return SessionHealth.of_session(check.result())
        except WhatsInfinityError as error:
            if error.transient:
                self.log.warning("Session check failed, trying again later: %s", error)
                return None
            return SessionHealth.of_error(error)
