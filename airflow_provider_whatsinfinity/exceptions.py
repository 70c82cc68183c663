"""
Errors raised by the WhatsInfinity client, hook, operators and sensor.

One base class, :class:`WhatsInfinityError`, and one subclass per meaning, so that callers can catch
exactly what they can act on. Every error carries what the server said (HTTP status, ``error``,
``details``) and its ``requestId``; the message includes the requestId so that it reaches the logs.
"""

from __future__ import annotations


class WhatsInfinityError(Exception):
    """
    Base class of every WhatsInfinity error.

    :param message: What went wrong, in words a user can act on.
    :param status_code: HTTP status of the server's answer; ``None`` when there was no answer or the
        error was found before any request was made.
    :param error: The ``error`` field of the server's answer.
    :param details: The ``details`` field of the server's answer.
    :param request_id: The server's ``requestId``, to quote when reporting a problem.
    """

    #: Whether retrying the same call later may succeed (used by operators to decide on Airflow retries).
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        details: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.error = error
        self.details = details
        self.request_id = request_id
        super().__init__(message)

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (requestId: {self.request_id})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"request_id={self.request_id!r})"
        )

    def to_dict(self) -> dict[str, object]:
        """Return the error as JSON-safe data, for trigger events and XCom."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "status_code": self.status_code,
            "error": self.error,
            "details": self.details,
            "request_id": self.request_id,
        }


class ValidationError(WhatsInfinityError, ValueError):
    """The request is invalid: refused by the server (400, 413) or caught before any request was made."""


class AuthenticationError(WhatsInfinityError):
    """The API key is missing or does not belong to the session (401)."""


class SessionNotFoundError(WhatsInfinityError):
    """The session, or what was asked of it such as its QR code, does not exist (404)."""


class ConflictError(WhatsInfinityError):
    """The session's state does not allow the call: it already exists, or it is disabled (409)."""


class NotOnWhatsAppError(WhatsInfinityError):
    """The recipient's number is not registered on WhatsApp (422)."""


class RateLimitedError(WhatsInfinityError):
    """
    The session sent too many messages in its rate window (429).

    :param retry_after: Seconds the server asked to wait before the next send.
    """

    transient = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        error: str | None = None,
        details: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, error=error, details=details, request_id=request_id
        )
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        """Return the error as JSON-safe data, with ``retry_after``."""
        return {**super().to_dict(), "retry_after": self.retry_after}


class QueueFullError(WhatsInfinityError):
    """The session's message queue is full while it is not connected (503)."""

    transient = True


class ServerError(WhatsInfinityError):
    """The service failed (5xx) on a call that changed nothing, or answered with something unreadable."""

    transient = True


class ServiceUnreachableError(WhatsInfinityError):
    """
    The service could not be reached, or did not answer a read-only call in time.

    Raised only where no request took effect: a connection that could not be opened, or a read-only
    call (check-session, QR, all-sessions) that timed out on every attempt.
    """

    transient = True


class OutcomeUnknownError(WhatsInfinityError):
    """
    A call that changes something may have reached the server, but its answer never came.

    Raised for a read timeout, a connection dropped after the request was sent, or a 5xx answer to a
    send. The message may or may not have gone out, so it is never retried automatically: retrying
    could deliver it twice. Check the recipient, or the session's history, before sending again.
    """
