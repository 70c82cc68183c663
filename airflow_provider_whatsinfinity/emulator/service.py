"""
The emulated WhatsInfinity service: sessions, their queues and rate windows, and the phones' outbox.

This is the domain model and its rules, with no HTTP in it: :mod:`.app` and its routers translate
requests into calls here, :mod:`.persistence` keeps what changes when there is a ``--state-file``.

Everything here runs on the server's event loop, one coroutine at a time, so no locks guard the
plain data; only delivery, which may wait for a typing indicator, is serialised per session.

A request may outlive the world it started in: a reset, or its session deleted or replaced while it
waited (on a delay fault, a typing pause, a media download). Whatever it would then change is
refused: :class:`~.inflight.InFlight` answers "was there a reset since this request started?", and
:meth:`EmulatedService._is_live` "is this still the session it authenticated as?" after every wait.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity.emulator.inflight import InFlight
from airflow_provider_whatsinfinity.emulator.linking import new_pairing_code, new_qr_value, qr_png
from airflow_provider_whatsinfinity.emulator.media import MediaFetcher
from airflow_provider_whatsinfinity.emulator.model import (
    ACTIVE,
    CONNECTING,
    DISABLED,
    DISCONNECTED,
    PAIRING,
    QR,
    ApiError,
    Message,
    Session,
    now_iso,
)
from airflow_provider_whatsinfinity.emulator.persistence import open_state
from airflow_provider_whatsinfinity.emulator.ratelimit import RateLimit

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig


class EmulatedService:
    """
    The state and rules of one emulated WhatsInfinity service.

    :param config: How the service behaves.
    :raises RuntimeError: The ``--state-file`` cannot be read or written; the message says why.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.outbox: list[Message] = []
        self.unregistered: set[str] = set()
        self.rate_limit = RateLimit(config.rate_limit, config.rate_window)
        #: The reset generation, and the background work a reset or shutdown cancels.
        self.in_flight = InFlight()
        self._media = MediaFetcher(config.fetch_timeout, config.fetch_max_bytes)
        self._store = open_state(config.state_file, self)

    # Session lifecycle -------------------------------------------------------------------------

    def create_session(self, session_id: str, api_key: str) -> Session:
        """
        Create a session that waits for its QR to be scanned.

        :param session_id: A valid, unused session ID.
        :param api_key: The session's API key.
        """
        if session_id in self.sessions:
            raise ApiError(409, "Conflict", f"Session {session_id!r} already exists")
        session = Session(session_id=session_id, api_key=api_key)
        self.sessions[session_id] = session
        self._show_qr(session)
        self._changed(session)
        return session

    def get(self, session_id: str) -> Session:
        """Return a session or raise 404. :param session_id: The session's ID."""
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(
                404, "Not Found", f"Session {session_id!r} not found; create it with POST /create-session"
            )
        return session

    def qr_png(self, session: Session) -> bytes:
        """
        Return the session's current QR code as PNG, drawing a new one when the old one expired.

        :param session: A session in status ``qr``.
        """
        if not session.has_qr:
            raise ApiError(
                404,
                "Not Found",
                f"No QR code available: session {session.session_id!r} is {session.status}"
                + (" and already linked" if session.linked else ""),
            )
        if session.qr_value is None or time.monotonic() - session.qr_issued >= self.config.qr_ttl:
            self._new_qr(session)
        assert session.qr_value is not None
        return qr_png(session.qr_value)

    def qr_expires_in(self, session: Session) -> int:
        """Whole seconds until the session's current QR expires. :param session: The session."""
        return max(0, math.ceil(session.qr_issued + self.config.qr_ttl - time.monotonic()))

    def request_pairing_code(self, session: Session, phone_number: str) -> str:
        """
        Start linking by pairing code.

        :param session: A session that is not linked yet.
        :param phone_number: The phone's number, 7 to 15 digits.
        """
        if session.status == DISABLED:
            raise ApiError(409, "Conflict", "Session is disabled; restart it before pairing")
        if session.linked and session.status in (ACTIVE, CONNECTING, DISCONNECTED):
            raise ApiError(
                409, "Conflict", f"Session {session.session_id!r} is already linked; restart it with wipe"
            )
        session.pairing_code = new_pairing_code()
        session.status = PAIRING
        session.qr_value = None
        self._schedule_auto_link(session)
        self._changed(session)
        return session.pairing_code

    async def link(self, session: Session) -> None:
        """
        Link a session as if its QR had been scanned, and deliver its queue.

        :param session: The session to link.
        """
        if not self._is_live(session):
            return  # an auto-link that was under way when its session was deleted
        session.cancel_timer()
        session.linked = True
        session.pairing_code = None
        session.qr_value = None
        self._activate(session)
        await self.deliver_queue(session)

    def disconnect(self, session: Session) -> None:
        """Drop a linked session's connection: sends queue until it is back. :param session: It."""
        session.cancel_timer()
        if session.status == ACTIVE:
            session.last_active_at = now_iso()
        session.status = DISCONNECTED if session.linked else QR
        self._changed(session)

    def disable(self, session: Session) -> None:
        """Disable a session: sends get 409 until it is restarted. :param session: The session."""
        session.cancel_timer()
        if session.status == ACTIVE:
            session.last_active_at = now_iso()
        session.status = DISABLED
        self._changed(session)

    def restart(self, session: Session, *, wipe: bool) -> None:
        """
        Restart a session.

        :param session: The session to restart.
        :param wipe: Forget the link: the session shows a new QR and waits to be linked again.
        """
        session.cancel_timer()
        if session.status == ACTIVE:
            session.last_active_at = now_iso()
        if wipe:
            session.linked = False
            session.warning = None
        session.pairing_code = None
        if session.linked:
            session.status = CONNECTING
            session.timer = asyncio.get_running_loop().call_later(
                self.config.connect_delay, self._connected, session.session_id
            )
        else:
            self._show_qr(session)
        self._changed(session)

    def delete(self, session: Session) -> None:
        """Delete a session and whatever it still had queued. :param session: The session."""
        session.cancel_timer()
        del self.sessions[session.session_id]
        self._store.session_deleted(session)

    def rotate_key(self, session: Session) -> str:
        """Give a session a new API key; the old one stops working at once. :param session: It."""
        session.api_key = secrets.token_urlsafe(24)
        self._changed(session)
        return session.api_key

    def set_warning(self, session: Session, warning: str | None) -> None:
        """
        Set or clear the warning check-session shows.

        :param session: The session.
        :param warning: The warning, or ``None`` to clear it.
        """
        session.warning = warning
        self._changed(session)

    def mark_unregistered(self, numbers: Iterable[str]) -> None:
        """Make sends to these numbers fail with 422. :param numbers: Phone numbers, 7 to 15 digits."""
        added = set(numbers) - self.unregistered
        self.unregistered.update(added)
        if added:
            self._store.numbers_unregistered(added)

    def reset(self) -> None:
        """Forget every session and message, and cut off whatever is still in flight."""
        self.in_flight.cut_off()
        for session in self.sessions.values():
            session.cancel_timer()
        self.sessions.clear()
        self.outbox.clear()
        self.unregistered.clear()
        self._store.compact()

    def check(self, session: Session) -> dict[str, Any]:
        """Return the documented check-session fields. :param session: The session."""
        data: dict[str, Any] = {
            "status": session.status,
            "isReady": session.is_ready,
            "hasQR": session.has_qr,
            "queueSize": len(session.queue),
            "rateLimitRemaining": self.rate_limit.remaining(session),
            "lastActiveAt": session.last_active_at,
        }
        if session.warning:
            data["warning"] = session.warning
        return data

    def summary(self, session: Session) -> dict[str, Any]:
        """Return a session as ``/all-sessions`` lists it; never its key. :param session: It."""
        return {"sessionId": session.session_id, **self.check(session), "createdAt": session.created_at}

    # Sending -----------------------------------------------------------------------------------

    def refuse_if_unsendable(self, session: Session, to: str) -> None:
        """
        Raise what the service answers before it would accept a message.

        :param session: The sending session.
        :param to: The recipient's digits.
        """
        if session.status == DISABLED:
            raise ApiError(
                409,
                "Conflict",
                f"Session {session.session_id!r} is disabled; restart it or create it again",
            )
        if to in self.unregistered:
            raise ApiError(422, "Request failed", f"Number not registered on WhatsApp: {to}")

    async def accept(self, session: Session, message: Message) -> dict[str, Any]:
        """
        Accept a validated message: deliver it now, or queue it until the session is active.

        :param session: The sending session.
        :param message: The message, validated and not a dry run.
        :return: The ``data`` of the send's answer.
        """
        if message.url is not None and self.config.fetch_media:
            message.size, message.sha256 = await self._media.fetch(message.url)
            self._ensure_live(session)
        # From here to the queue or outbox nothing awaits, so concurrent sends cannot overdraw the window.
        self.rate_limit.refuse_if_spent(session)
        if session.is_ready and not session.queue:
            self.rate_limit.count(session)
            await self._deliver(session, message)
            return {"queued": False, "messageId": message.message_id}
        if len(session.queue) >= self.config.queue_max:
            raise ApiError(
                503,
                "Request failed",
                f"Message queue full: {len(session.queue)} messages wait for session "
                f"{session.session_id!r} to reconnect; retry later",
            )
        self.rate_limit.count(session)
        message.queued = True
        session.queue.append(message)
        self._store.message_queued(message)
        if session.is_ready:
            # Active, but an earlier queue is still being delivered: this one goes out after it.
            self.in_flight.spawn(self.deliver_queue(session))
        return {"queued": True, "messageId": message.message_id}

    async def deliver_queue(self, session: Session) -> None:
        """Deliver a session's queue in order while it stays active. :param session: The session."""
        async with session.delivery_lock:
            while session.queue and session.is_ready and self._is_live(session):
                message = session.queue[0]
                if message.typing and self.config.typing_delay:
                    await asyncio.sleep(self.config.typing_delay)
                    # While "typing", the session may have dropped, or been deleted or replaced.
                    if not (session.is_ready and self._is_live(session)):
                        break
                session.queue.popleft()
                self._record_delivery(session, message)

    async def _deliver(self, session: Session, message: Message) -> None:
        async with session.delivery_lock:
            if message.typing and self.config.typing_delay:
                await asyncio.sleep(self.config.typing_delay)
            self._ensure_live(session)
            self._record_delivery(session, message)

    def _record_delivery(self, session: Session, message: Message) -> None:
        message.delivered_at = now_iso()
        session.last_active_at = message.delivered_at
        self.outbox.append(message)
        self._store.message_delivered(message)

    def _changed(self, session: Session) -> None:
        # A session that was deleted while a request or task still held it must stay deleted.
        if self._is_live(session):
            self._store.session_changed(session)

    def _is_live(self, session: Session) -> bool:
        """Whether a session is still the one under its ID: not deleted, replaced, or reset away."""
        return self.sessions.get(session.session_id) is session

    def _ensure_live(self, session: Session) -> None:
        if not self._is_live(session):
            raise ApiError(
                404,
                "Not Found",
                f"Session {session.session_id!r} was deleted (or the emulator reset) while this message "
                "waited; it was not sent",
            )

    async def aclose(self) -> None:
        """Stop timers and deliveries, close the media downloader, write the state file one last time."""
        for session in self.sessions.values():
            session.cancel_timer()
        self.in_flight.cancel()
        await self._media.aclose()
        self._store.close()

    # Internals ---------------------------------------------------------------------------------

    def _new_qr(self, session: Session) -> None:
        session.qr_value = new_qr_value()
        session.qr_issued = time.monotonic()

    def _show_qr(self, session: Session) -> None:
        session.status = QR
        self._new_qr(session)
        self._schedule_auto_link(session)

    def _schedule_auto_link(self, session: Session) -> None:
        if self.config.auto_link is None:
            return
        session.cancel_timer()
        session.timer = asyncio.get_running_loop().call_later(
            self.config.auto_link, self._auto_link, session.session_id
        )

    def _auto_link(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.status in (QR, PAIRING):
            session.timer = None
            self.in_flight.spawn(self.link(session))

    def _connected(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.status == CONNECTING:
            session.timer = None
            self._activate(session)
            self.in_flight.spawn(self.deliver_queue(session))

    def _activate(self, session: Session) -> None:
        session.status = ACTIVE
        session.last_active_at = now_iso()
        self._changed(session)

    async def resume(self) -> None:
        """Pick up after a restart: reconnect sessions that were connecting, deliver ready queues."""
        for session in list(self.sessions.values()):
            if session.status == QR:
                self._show_qr(session)
            elif session.status == PAIRING:
                self._schedule_auto_link(session)
            elif session.status == CONNECTING:
                session.timer = asyncio.get_running_loop().call_later(
                    self.config.connect_delay, self._connected, session.session_id
                )
            elif session.is_ready and session.queue:
                await self.deliver_queue(session)
