"""
The emulated service's plain data: sessions, messages, and the error every rule raises.

Shared by the rules (:mod:`.service`), the state file (:mod:`.persistence`) and the HTTP face (:mod:`.app`).
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

ACTIVE = "active"
CONNECTING = "connecting"
QR = "qr"
PAIRING = "pairing"
DISCONNECTED = "disconnected"
DISABLED = "disabled"
STATUSES = (ACTIVE, CONNECTING, QR, PAIRING, DISCONNECTED, DISABLED)


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

    def to_record(self) -> dict[str, Any]:
        """Return the message as the state file keeps it: every field, by its Python name."""
        return {name: getattr(self, name) for name in MESSAGE_FIELDS}


MESSAGE_FIELDS = tuple(f.name for f in fields(Message))


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

    def to_record(self) -> dict[str, Any]:
        """Return what the state file keeps of a session but its queue; no QR, code or rate window."""
        return {
            "sessionId": self.session_id,
            "apiKey": self.api_key,
            "status": self.status,
            "linked": self.linked,
            "createdAt": self.created_at,
            "lastActiveAt": self.last_active_at,
            "warning": self.warning,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Session:
        """
        Return a session with an empty queue from what :meth:`to_record` wrote.

        :param record: The stored session.
        """
        return cls(
            session_id=record["sessionId"],
            api_key=record["apiKey"],
            status=record["status"],
            linked=record["linked"],
            created_at=record["createdAt"],
            last_active_at=record["lastActiveAt"],
            warning=record.get("warning"),
        )
