"""
The emulated WhatsInfinity world: sessions, their queues and rate windows, and the phones' outbox.

Everything here runs on the server's event loop, one coroutine at a time, so no locks guard the
plain data; only delivery, which may wait for a typing indicator, is serialised per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_whatsinfinity.emulator.config import EmulatorConfig

ACTIVE = "active"
CONNECTING = "connecting"
QR = "qr"
PAIRING = "pairing"
DISCONNECTED = "disconnected"
DISABLED = "disabled"
STATUSES = (ACTIVE, CONNECTING, QR, PAIRING, DISCONNECTED, DISABLED)

PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ0123456789"


class ApiError(Exception):
    """
    An answer in the documented error shape.

    :param status_code: HTTP status of the answer.
    :param error: Short error title, as in the API doc's error table.
    :param details: What went wrong and what to do about it.
    :param extra: More top-level fields, such as ``retryAfter``.
    :param headers: More response headers, such as ``Retry-After``.
    """

    def __init__(
        self,
        status_code: int,
        error: str,
        details: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {error}: {details}")
        self.status_code = status_code
        self.error = error
        self.details = details
        self.extra = extra or {}
        self.headers = dict(headers or {})


def bad_request(details: str) -> ApiError:
    """Return a 400 in the doc's shape. :param details: What is wrong with the request."""
    return ApiError(400, "Bad Request", details)


def now_iso() -> str:
    """Return the current UTC time as an ISO 8601 string with milliseconds and a ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown(value: object, limit: int = 40) -> str:
    """Return a short repr of a user's value for an error message. :param value: The value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Message:
    """One accepted message, queued or delivered."""

    message_id: str
    session_id: str
    to: str
    type: str
    message: str | None = None
    url: str | None = None
    caption: str | None = None
    file_name: str | None = None
    mimetype: str | None = None
    typing: bool = False
    queued: bool = False
    accepted_at: str = field(default_factory=now_iso)
    delivered_at: str | None = None
    size: int | None = None
    sha256: str | None = None

    def to_outbox(self) -> dict[str, Any]:
        """Return what the emulated phone received, as the control API shows it."""
        entry: dict[str, Any] = {
            "sessionId": self.session_id,
            "to": self.to,
            "type": self.type,
            "messageId": self.message_id,
            "queued": self.queued,
            "acceptedAt": self.accepted_at,
            "deliveredAt": self.delivered_at,
        }
        if self.type == "text":
            entry["message"] = self.message
        else:
            entry.update(url=self.url, caption=self.caption, fileName=self.file_name, mimetype=self.mimetype)
            if self.size is not None:
                entry.update(size=self.size, sha256=self.sha256)
        return entry


@dataclass
class Session:
    """One emulated WhatsApp session."""

    session_id: str
    api_key: str
    status: str = QR
    linked: bool = False
    created_at: str = field(default_factory=now_iso)
    last_active_at: str | None = None
    warning: str | None = None
    pairing_code: str | None = None
    queue: deque[Message] = field(default_factory=deque)
    qr_value: str | None = None
    qr_issued: float = 0.0
    window_start: float | None = None
    window_count: int = 0
    timer: asyncio.TimerHandle | None = None
    delivery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def key_matches(self, candidate: str) -> bool:
        """Compare an API key in constant time. :param candidate: The key a caller sent."""
        return hmac.compare_digest(candidate.encode(), self.api_key.encode())

    @property
    def is_ready(self) -> bool:
        """Whether sends are delivered at once."""
        return self.status == ACTIVE

    @property
    def has_qr(self) -> bool:
        """Whether a QR code is there to scan."""
        return self.status == QR

    def cancel_timer(self) -> None:
        """Forget a pending auto-link or reconnect."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Emulator:
    """
    The state and rules of one emulated WhatsInfinity service.

    :param config: How the service behaves.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.outbox: list[Message] = []
        self.unregistered: set[str] = set()
        self._fetch_client: httpx.AsyncClient | None = None
        if config.state_file is not None and config.state_file.exists():
            self._load()

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
        self.save()
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
        return _qr_png(session.qr_value)

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
        session.pairing_code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
        session.status = PAIRING
        session.qr_value = None
        self._schedule_auto_link(session)
        self.save()
        return session.pairing_code

    async def link(self, session: Session) -> None:
        """
        Link a session as if its QR had been scanned, and deliver its queue.

        :param session: The session to link.
        """
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
        self.save()

    def disable(self, session: Session) -> None:
        """Disable a session: sends get 409 until it is restarted. :param session: The session."""
        session.cancel_timer()
        if session.status == ACTIVE:
            session.last_active_at = now_iso()
        session.status = DISABLED
        self.save()

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
        self.save()

    def delete(self, session: Session) -> None:
        """Delete a session and whatever it still had queued. :param session: The session."""
        session.cancel_timer()
        del self.sessions[session.session_id]
        self.save()

    def rotate_key(self, session: Session) -> str:
        """Give a session a new API key; the old one stops working at once. :param session: It."""
        session.api_key = secrets.token_urlsafe(24)
        self.save()
        return session.api_key

    def check(self, session: Session) -> dict[str, Any]:
        """Return the documented check-session fields. :param session: The session."""
        data: dict[str, Any] = {
            "status": session.status,
            "isReady": session.is_ready,
            "hasQR": session.has_qr,
            "queueSize": len(session.queue),
            "rateLimitRemaining": self.rate_limit_remaining(session),
            "lastActiveAt": session.last_active_at,
        }
        if session.warning:
            data["warning"] = session.warning
        return data

    def summary(self, session: Session) -> dict[str, Any]:
        """Return a session as ``/all-sessions`` lists it; never its key. :param session: It."""
        return {"sessionId": session.session_id, **self.check(session), "createdAt": session.created_at}

    # Sending -----------------------------------------------------------------------------------

    def rate_limit_remaining(self, session: Session) -> int:
        """Messages the session may still send in its current window. :param session: It."""
        # Reading must not start a window: a window starts with the first send counted in it.
        if session.window_start is None or time.monotonic() - session.window_start >= self.config.rate_window:
            return self.config.rate_limit
        return self.config.rate_limit - session.window_count

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
            await self._fetch(message)
        # From here to the queue or outbox nothing awaits, so concurrent sends cannot overdraw the window.
        self._roll_window(session)
        if session.window_count >= self.config.rate_limit:
            assert session.window_start is not None
            retry_after = max(1, math.ceil(session.window_start + self.config.rate_window - time.monotonic()))
            raise ApiError(
                429,
                "Rate limit exceeded",
                "Too many requests",
                extra={"retryAfter": retry_after},
                headers={"Retry-After": str(retry_after)},
            )
        if session.is_ready and not session.queue:
            session.window_count += 1
            await self._deliver(session, message)
            return {"queued": False, "messageId": message.message_id}
        if len(session.queue) >= self.config.queue_max:
            raise ApiError(
                503,
                "Request failed",
                f"Message queue full: {len(session.queue)} messages wait for session "
                f"{session.session_id!r} to reconnect; retry later",
            )
        session.window_count += 1
        message.queued = True
        session.queue.append(message)
        self.save()
        if session.is_ready:
            # Active, but an earlier queue is still being delivered: this one goes out after it.
            asyncio.get_running_loop().create_task(self.deliver_queue(session))
        return {"queued": True, "messageId": message.message_id}

    async def deliver_queue(self, session: Session) -> None:
        """Deliver a session's queue in order while it stays active. :param session: The session."""
        async with session.delivery_lock:
            while session.queue and session.is_ready and self.sessions.get(session.session_id) is session:
                message = session.queue[0]
                if message.typing and self.config.typing_delay:
                    await asyncio.sleep(self.config.typing_delay)
                    if not session.is_ready:
                        break
                session.queue.popleft()
                self._record_delivery(session, message)
        self.save()

    async def _deliver(self, session: Session, message: Message) -> None:
        async with session.delivery_lock:
            if message.typing and self.config.typing_delay:
                await asyncio.sleep(self.config.typing_delay)
            self._record_delivery(session, message)
        self.save()

    def _record_delivery(self, session: Session, message: Message) -> None:
        message.delivered_at = now_iso()
        session.last_active_at = message.delivered_at
        self.outbox.append(message)

    async def _fetch(self, message: Message) -> None:
        assert message.url is not None
        if self._fetch_client is None:
            self._fetch_client = httpx.AsyncClient(follow_redirects=True, timeout=self.config.fetch_timeout)
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._fetch_client.stream("GET", message.url) as response:
                if response.status_code >= 400:
                    raise bad_request(
                        f"Could not fetch media from {message.url}: HTTP {response.status_code}; "
                        "the URL must be publicly accessible"
                    )
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.config.fetch_max_bytes:
                        raise bad_request(
                            f"Media at {message.url} is larger than {self.config.fetch_max_bytes} bytes"
                        )
                    digest.update(chunk)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise bad_request(f"Could not fetch media from {message.url}: {reason}") from exc
        message.size = size
        message.sha256 = digest.hexdigest()

    async def aclose(self) -> None:
        """Close the media downloader and write the state file one last time."""
        for session in self.sessions.values():
            session.cancel_timer()
        if self._fetch_client is not None:
            await self._fetch_client.aclose()
        self.save()

    # Internals ---------------------------------------------------------------------------------

    def _roll_window(self, session: Session) -> None:
        now = time.monotonic()
        if session.window_start is None or now - session.window_start >= self.config.rate_window:
            session.window_start = now
            session.window_count = 0

    def _new_qr(self, session: Session) -> None:
        # Shaped like WhatsApp's own pairing payload: ref, public key, identity key, adv secret.
        parts = [secrets.token_urlsafe(n) for n in (48, 32, 32, 24)]
        session.qr_value = "2@" + ",".join(parts)
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
            asyncio.get_running_loop().create_task(self.link(session))

    def _connected(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.status == CONNECTING:
            session.timer = None
            self._activate(session)
            asyncio.get_running_loop().create_task(self.deliver_queue(session))

    def _activate(self, session: Session) -> None:
        session.status = ACTIVE
        session.last_active_at = now_iso()
        self.save()

    # Persistence -------------------------------------------------------------------------------

    def save(self) -> None:
        """Write sessions, keys, queues and the outbox to the state file, atomically."""
        path = self.config.state_file
        if path is None:
            return
        state = {
            "version": 1,
            "sessions": [
                {
                    "sessionId": s.session_id,
                    "apiKey": s.api_key,
                    "status": s.status,
                    "linked": s.linked,
                    "createdAt": s.created_at,
                    "lastActiveAt": s.last_active_at,
                    "warning": s.warning,
                    "queue": [asdict(m) for m in s.queue],
                }
                for s in self.sessions.values()
            ],
            "outbox": [asdict(m) for m in self.outbox],
            "unregistered": sorted(self.unregistered),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(state, fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _load(self) -> None:
        assert self.config.state_file is not None
        try:
            state = json.loads(self.config.state_file.read_text())
            for raw in state["sessions"]:
                session = Session(
                    session_id=raw["sessionId"],
                    api_key=raw["apiKey"],
                    status=raw["status"],
                    linked=raw["linked"],
                    created_at=raw["createdAt"],
                    last_active_at=raw["lastActiveAt"],
                    warning=raw.get("warning"),
                    queue=deque(Message(**m) for m in raw["queue"]),
                )
                self.sessions[session.session_id] = session
            self.outbox = [Message(**m) for m in state["outbox"]]
            self.unregistered = set(state["unregistered"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(
                f"Cannot read emulator state file {self.config.state_file}: {exc!r}; "
                "move it away to start empty"
            ) from exc

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


def _qr_png(value: str) -> bytes:
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(value, error="m", micro=False).save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()
