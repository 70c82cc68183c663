"""
Faults the control API can inject into the emulated service, and the ASGI layer that applies them.

A fault matches requests by path (``/send`` matches ``/send``; ``/check-session`` also matches
``/check-session/mysession``) and optionally by method, and fires either for the next ``times``
matching requests or for a ``rate`` share of them, or both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_MODES = ("status", "drop", "delay", "after")
AFTER_ACTIONS = ("status", "drop")
TRANSPORT_EXTENSION = "whatsinfinity.transport"

# What the service calls its errors, so that an injected status reads like a real one.
ERROR_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    422: "Request failed",
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Request failed",
}
ERROR_DETAILS = {
    422: "Number not registered on WhatsApp",
    429: "Too many requests",
    500: "Unexpected error",
    503: "Message queue full",
}


class FaultSpecError(ValueError):
    """A fault description the control API cannot use."""


@dataclass
class Fault:
    """
    One injected fault.

    :param path: Request path the fault applies to; also matches paths below it.
    :param mode: ``status``, ``drop``, ``delay`` or ``after``.
    :param method: Only requests with this HTTP method, or any when ``None``.
    :param status: Status answered by ``status`` mode, and by ``after`` mode when ``then`` is ``status``.
    :param seconds: How long ``delay`` mode waits before handling the request.
    :param then: What ``after`` mode does once the request was handled: ``status`` or ``drop``.
    :param times: Fire for at most this many matching requests.
    :param rate: Fire for this share (0 to 1) of matching requests.
    :param retry_after: ``retryAfter`` sent with an injected 429.
    :param seed: Seed for ``rate`` so that a soak run can be repeated.
    :param body_contains: Only requests whose body contains this text, such as one recipient's number.
    """

    path: str
    mode: str
    method: str | None = None
    status: int = 500
    seconds: float = 0.0
    then: str = "status"
    times: int | None = None
    rate: float | None = None
    retry_after: int = 1
    seed: int | None = None
    body_contains: str | None = None
    fired: int = 0
    matched: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fault:
        """
        Build a fault from the control API's JSON.

        :param body: ``{"path", "mode", ...}`` as posted to ``/_emulator/faults``.
        """
        known = {
            "path",
            "mode",
            "method",
            "status",
            "seconds",
            "then",
            "times",
            "rate",
            "retryAfter",
            "seed",
            "bodyContains",
        }
        unknown = sorted(set(body) - known)
        if unknown:
            raise FaultSpecError(
                f"Unknown fault fields: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        path = body.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise FaultSpecError("'path' must be a request path such as \"/send\"")
        mode = body.get("mode")
        if mode not in FAULT_MODES:
            raise FaultSpecError(f"'mode' must be one of {', '.join(FAULT_MODES)}")
        method = body.get("method")
        if method is not None and not isinstance(method, str):
            raise FaultSpecError("'method' must be a string such as \"POST\"")
        status = _number(body, "status", int, 500)
        # Error statuses only: they always carry a body, which 1xx, 204 and 304 must not.
        if not 400 <= status <= 599:
            raise FaultSpecError("'status' must be an error status between 400 and 599")
        if mode == "status" and "status" not in body:
            raise FaultSpecError("'status' mode needs a 'status' to answer, such as 503")
        seconds = _number(body, "seconds", float, 0.0)
        if not 0 <= seconds <= 600:
            raise FaultSpecError("'seconds' must be between 0 and 600")
        then = body.get("then", "status")
        if then not in AFTER_ACTIONS:
            raise FaultSpecError(f"'then' must be one of {', '.join(AFTER_ACTIONS)}")
        times = body.get("times")
        if times is not None:
            times = _number(body, "times", int, 1)
            if times < 1:
                raise FaultSpecError("'times' must be at least 1")
        rate = body.get("rate")
        if rate is not None:
            rate = _number(body, "rate", float, 1.0)
            if not 0 <= rate <= 1:
                raise FaultSpecError("'rate' must be between 0 and 1")
        if times is None and rate is None:
            times = 1
        retry_after = _number(body, "retryAfter", int, 1)
        if not 0 <= retry_after <= 86400:
            raise FaultSpecError("'retryAfter' must be between 0 and 86400 seconds")
        body_contains = body.get("bodyContains")
        if body_contains is not None and (not isinstance(body_contains, str) or not body_contains):
            raise FaultSpecError("'bodyContains' must be a non-empty string")
        seed = body.get("seed")
        if seed is not None:
            seed = _number(body, "seed", int, 0)
        return cls(
            path=path.rstrip("/") or "/",
            mode=mode,
            method=method.upper() if method else None,
            status=status,
            seconds=seconds,
            then=then,
            times=times,
            rate=rate,
            retry_after=retry_after,
            seed=seed,
            body_contains=body_contains,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the fault as the control API lists it, with how often it matched and fired."""
        return {
            "path": self.path,
            "mode": self.mode,
            "method": self.method,
            "status": self.status,
            "seconds": self.seconds,
            "then": self.then,
            "times": self.times,
            "rate": self.rate,
            "retryAfter": self.retry_after,
            "seed": self.seed,
            "bodyContains": self.body_contains,
            "matched": self.matched,
            "fired": self.fired,
        }

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        """
        Whether a request falls under this fault.

        :param method: The request's method.
        :param path: The request's path.
        :param body: The request's body; read only when some fault has ``body_contains``.
        """
        if self.method is not None and method != self.method:
            return False
        if self.body_contains is not None and self.body_contains.encode() not in body:
            return False
        return path == self.path or path.startswith(self.path.rstrip("/") + "/")

    @property
    def spent(self) -> bool:
        """Whether a ``times`` fault has fired as often as it may."""
        return self.times is not None and self.fired >= self.times

    def fire(self) -> bool:
        """Decide whether this matching request gets the fault."""
        self.matched += 1
        if self.spent or (self.rate is not None and self._rng.random() >= self.rate):
            return False
        self.fired += 1
        return True


def _number(body: dict[str, Any], name: str, kind: type[int] | type[float], default: Any) -> Any:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FaultSpecError(f"'{name}' must be a finite number")
    if kind is int and value != int(value):
        raise FaultSpecError(f"'{name}' must be a whole number")
    return kind(value)


class FaultInjector:
    """
    The list of active faults and the ASGI layer that applies them.

    :param app: The application the faults wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Start injecting a fault. :param fault: The fault."""
        self.faults.append(fault)

    def clear(self) -> None:
        """Stop injecting every fault."""
        self.faults.clear()

    def pick(self, method: str, path: str, body: bytes = b"") -> Fault | None:
        """
        Return the fault that fires for a request, if any.

        :param method: The request's method.
        :param path: The request's path.
        :param body: The request's body, when a fault looks at it.
        """
        for fault in self.faults:
            if fault.matches(method, path, body) and fault.fire():
                return fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Apply the first fault that fires for this request, or pass it on untouched."""
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        body = b""
        if any(fault.body_contains is not None for fault in self.faults):
            receive, body = await buffered(receive)
        fault = self.pick(scope["method"], scope["path"], body)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.mode == "delay":
            # Slow processing, not a slow upload: the request arrives whole, then the server dawdles.
            receive, _ = await buffered(receive)
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.mode == "status":
            await send_error_status(scope, send, fault)
        elif fault.mode == "drop":
            await drop_connection(scope)
        else:  # after: the request takes full effect, but its answer is lost

            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            if fault.then == "drop":
                await drop_connection(scope)
            else:
                await send_error_status(scope, send, fault)


async def buffered(receive: Receive) -> tuple[Receive, bytes]:
    """Read a request's whole body now; return a ``receive`` that replays it, and the body."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    return replay, body


def error_title(status: int) -> str:
    """Return the service's title for an error status. :param status: The HTTP status."""
    if status in ERROR_TITLES:
        return ERROR_TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def send_error_status(scope: Scope, send: Send, fault: Fault) -> None:
    """Answer with an injected error status in the documented shape."""
    status = fault.status
    body: dict[str, Any] = {
        "success": False,
        "requestId": scope["state"]["request_id"],
        "error": error_title(status),
        "details": ERROR_DETAILS.get(status, f"Injected fault: HTTP {status}"),
    }
    headers = [(b"content-type", b"application/json")]
    if status == 429:
        body["retryAfter"] = fault.retry_after
        headers.append((b"retry-after", str(fault.retry_after).encode()))
    payload = json.dumps(body).encode()
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def drop_connection(scope: Scope) -> None:
    """Close the client's connection without an answer, as a crashed proxy or server would."""
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if transport is None:
        raise RuntimeError("This server does not expose its transport: run the emulator with run_emulator()")
    transport.close()
    # Let the server notice the closed connection before the application returns, so that it does not
    # try to answer on it.
    for _ in range(3):
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
