"""What the WhatsInfinity API answers, as small dataclasses that turn into JSON-safe dicts for XCom."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def text_or_none(value: Any) -> str | None:
    """Return a field of an answer as text, or ``None`` when it is missing or empty. :param value: It."""
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True)
class SessionStatus:
    """
    The state of a WhatsInfinity session, as check-session (or all-sessions) reports it.

    Fields the server did not send are ``None``; unknown extra fields are ignored.

    :param session_id: The session's ID.
    :param status: One of active, connecting, qr, pairing, disconnected, disabled.
    :param is_ready: Whether the session is connected and ready to send.
    :param has_qr: Whether a QR code is available to scan.
    :param queue_size: Messages queued for delivery.
    :param rate_limit_remaining: Messages left in the current rate window.
    :param last_active_at: When the session was last active (ISO 8601 timestamp).
    :param warning: A warning from the service, such as the number being active elsewhere.
    """

    session_id: str
    status: str
    is_ready: bool
    has_qr: bool
    queue_size: int | None = None
    rate_limit_remaining: int | None = None
    last_active_at: str | None = None
    warning: str | None = None

    @classmethod
    def from_api(cls, session_id: str, data: Mapping[str, Any]) -> SessionStatus:
        """
        Build a status from an answer's ``data``.

        :param session_id: The session asked about; ``data["sessionId"]`` wins when present.
        :param data: The ``data`` member of the answer.
        """
        status = str(data.get("status") or "unknown")
        is_ready = data.get("isReady")
        has_qr = data.get("hasQR")
        return cls(
            session_id=str(data.get("sessionId") or session_id),
            status=status,
            is_ready=is_ready if isinstance(is_ready, bool) else status == "active",
            has_qr=has_qr if isinstance(has_qr, bool) else status == "qr",
            queue_size=_int_or_none(data.get("queueSize")),
            rate_limit_remaining=_int_or_none(data.get("rateLimitRemaining")),
            last_active_at=text_or_none(data.get("lastActiveAt")),
            warning=text_or_none(data.get("warning")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the status as a JSON-safe dict."""
        return asdict(self)

    def summary(self) -> str:
        """Return a one-line description for logs: status, readiness, queue and any warning."""
        parts = [f"session {self.session_id!r} is {self.status}", "ready" if self.is_ready else "not ready"]
        if self.queue_size is not None:
            parts.append(f"queueSize {self.queue_size}")
        if self.warning:
            parts.append(f"warning: {self.warning}")
        return ", ".join(parts)


@dataclass(frozen=True)
class SendResult:
    """
    The server's answer to a send.

    :param message_id: The message's ID, when the server gave one.
    :param queued: Whether the message waits in the session's queue rather than being delivered.
    :param dry_run: Whether this was only a validation.
    :param request_id: The answer's ``requestId``.
    :param to: The recipient's number, digits only.
    :param payload: For a dry run, the message as the service would hand it to WhatsApp.
    """

    message_id: str | None
    queued: bool
    dry_run: bool
    request_id: str | None
    to: str
    payload: dict[str, Any] | None = None

    @classmethod
    def from_api(cls, to: str, data: Mapping[str, Any], request_id: str | None) -> SendResult:
        """
        Build a result from an answer's ``data``.

        :param to: The recipient's digits, as sent.
        :param data: The ``data`` member of the answer.
        :param request_id: The answer's ``requestId``.
        """
        payload = data.get("payload")
        return cls(
            message_id=text_or_none(data.get("messageId") or data.get("id")),
            queued=bool(data.get("queued", False)),
            dry_run=bool(data.get("dryRun", False)),
            request_id=request_id,
            to=to,
            payload=dict(payload) if isinstance(payload, dict) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-safe dict."""
        return asdict(self)
