"""
The retry engine: when a call is tried again, after how long, and when it gives up.

Retries never send a message twice:

- 429: wait ``retryAfter`` (plus a little jitter) while the total wait stays within
  ``max_rate_limit_wait``, then raise :class:`RateLimitedError`.
- A request that never left (connect error, connect or pool timeout, a proxy refusing the
  connection), the API's own "queue full" answer (a 503 to ``/send`` with the API's JSON error body),
  and on read-only calls (check-session, QR, all-sessions, dry runs) any 5xx or timeout: exponential
  backoff with full jitter, at most ``max_attempts`` attempts and no new attempt after
  ``retry_deadline`` seconds.
- A call that changes something and may have reached the server is never retried:
  :class:`OutcomeUnknownError`. That is a read timeout, a dropped connection, any 5xx other than the
  API's queue-full answer (a proxy's plain-text 503 can come after the service accepted the message),
  and any unexpected error once the request was handed to the network.
- A request that could not be built or was refused by the HTTP library before it left (a header or
  body it cannot encode) is a :class:`ValidationError`: nothing was sent.
- 400, 401, 404, 409, 422: never retried.

Which answer or network error is which of these errors is decided in
:mod:`airflow_provider_whatsinfinity.answers`; this module only decides what each error allows.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import httpx

from airflow_provider_whatsinfinity.exceptions import (
    QueueFullError,
    RateLimitedError,
    ServerError,
    ServiceUnreachableError,
    ValidationError,
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.validation import check_number

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from airflow_provider_whatsinfinity.api import _Call

# The retry lines are the client's: users' logging settings and the tests know them by that name.
log = logging.getLogger("airflow_provider_whatsinfinity.client")

T = TypeVar("T")

# What an attempt came back with: the answer, or the exception the request raised.
Outcome: TypeAlias = httpx.Response | Exception | None

# Errors where the request certainly never reached the server. A ProxyError is a proxy's refusal to
# open the tunnel; nothing was forwarded.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


@dataclass(frozen=True)
class RetrySettings:
    """
    How hard a client tries before it gives up.

    :param max_attempts: Attempts for errors retried with backoff (not 429s, which have their own budget).
    :param backoff_base: First backoff ceiling in seconds; it doubles with each attempt.
    :param backoff_max: Largest backoff ceiling in seconds.
    :param retry_deadline: No backoff retry starts later than this many seconds after the first attempt.
    :param max_rate_limit_wait: Most seconds spent waiting out 429s in one call.
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_deadline: float = 60.0
    max_rate_limit_wait: float = 120.0

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValidationError(f"max_attempts must be a whole number of at least 1, got {attempts!r}")
        for name in ("backoff_base", "backoff_max", "retry_deadline", "max_rate_limit_wait"):
            check_number(getattr(self, name), name)


@dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclass
class _Budget:
    started: float = field(default_factory=time.monotonic)
    attempt: int = 0
    rate_limit_waited: float = 0.0


def _attempts(
    call: _Call[T], retry: RetrySettings, settle: Callable[[_Call[T], Outcome], T]
) -> Generator[_Call[T] | _Sleep, Outcome, T]:
    """
    Run one call to its end: yield the call to have it sent, or a pause to have it waited out.

    The driver sends back the ``httpx.Response``, or the exception the request raised. This is the
    same idea as httpx's ``Auth.sync_auth_flow`` / ``async_auth_flow``: one generator holds every
    decision, and a sync and an async driver only do the I/O and the sleeping.

    A call that changes something is retried only after an attempt that certainly did not take
    effect (429, the API's queue-full answer, a request that never left), so every pause follows
    a refusal: the caller is told so (``on_refused``) before the driver waits.

    :param call: The call to run.
    :param retry: How hard to try.
    :param settle: Turns what an attempt came back with into the call's result, or raises the error
        it means.
    """
    budget = _Budget()
    while True:
        budget.attempt += 1
        outcome = yield call
        try:
            return settle(call, outcome)
        except RateLimitedError as error:
            pause = _rate_limit_pause(call, error, budget, retry)
        except WhatsInfinityError as error:
            pause = _backoff_pause(call, error, budget, retry)
        if call.callbacks is not None and call.callbacks.on_refused is not None:
            call.callbacks.on_refused()
        yield _Sleep(pause)


def _rate_limit_pause(
    call: _Call[Any], error: RateLimitedError, budget: _Budget, retry: RetrySettings
) -> float:
    wait = max(float(error.retry_after or 1), 0.0)
    # A little jitter keeps many clients from all coming back in the same instant; little, because
    # every millisecond of it is a millisecond of the session's window left unused (2% of a 2 s wait).
    pause = wait + random.uniform(0, min(0.25, 0.02 * wait + 0.02))
    if budget.rate_limit_waited + pause > retry.max_rate_limit_wait:
        raise RateLimitedError(
            f"{call.name}: rate limited, and waiting another {wait:.0f} s would exceed "
            f"max_rate_limit_wait ({retry.max_rate_limit_wait:.0f} s, "
            f"{budget.rate_limit_waited:.0f} s waited so far)",
            retry_after=error.retry_after,
            status_code=error.status_code,
            error=error.error,
            details=error.details,
            request_id=error.request_id,
        ) from error
    budget.rate_limit_waited += pause
    log.warning("WhatsInfinity %s; waiting %.1f s as the server asked", error, pause)
    return pause


def _backoff_pause(
    call: _Call[Any], error: WhatsInfinityError, budget: _Budget, retry: RetrySettings
) -> float:
    retryable = isinstance(error, (ServiceUnreachableError, QueueFullError)) or (
        call.kind == "read" and isinstance(error, ServerError)
    )
    if not retryable or budget.attempt >= retry.max_attempts:
        raise error
    ceiling = min(retry.backoff_max, retry.backoff_base * 2 ** (budget.attempt - 1))
    pause = random.uniform(0, ceiling)
    if time.monotonic() - budget.started + pause > retry.retry_deadline:
        raise error
    log.warning(
        "WhatsInfinity %s; retrying in %.1f s (attempt %d of %d)",
        error,
        pause,
        budget.attempt + 1,
        retry.max_attempts,
    )
    return pause
