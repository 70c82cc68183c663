"""
A retry policy for WhatsInfinity tasks, for Airflow 3.3+ (``retry_policy=`` on any operator).

The module imports on every Airflow 3; on a release without retry policies, building the policy says
it needs Airflow 3.3+.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_whatsinfinity._compat import (
    HAS_RETRY_POLICY,
    RetryDecision,
    RetryPolicy,
    needs_airflow,
)
from airflow_provider_whatsinfinity.exceptions import RateLimitedError, WhatsInfinityError

if TYPE_CHECKING:
    from airflow.sdk import Context


class WhatsInfinityRetryPolicy(RetryPolicy):
    """
    An Airflow 3.3+ retry policy for WhatsInfinity tasks.

    - Rate limited: retry once the server's ``retry_after`` has passed (at least ``min_delay``).
    - Queue full, server errors, service unreachable: the task's own retry delay applies.
    - Anything else from WhatsInfinity (invalid input, wrong key, unknown session, not on WhatsApp,
      outcome unknown): fail at once, whatever ``retries`` says.

    .. code-block:: python

        WhatsInfinitySendTextOperator(..., retries=5, retry_policy=WhatsInfinityRetryPolicy())

    :param min_delay: Shortest wait before retrying a rate-limited task.
    :raises AirflowOptionalProviderFeatureException: On Airflow before 3.3, which has no retry policies.
    """

    def __init__(self, min_delay: timedelta = timedelta(seconds=5)) -> None:
        if not HAS_RETRY_POLICY:
            needs_airflow(
                "WhatsInfinityRetryPolicy (retry_policy=)",
                "3.3",
                "Use the task's retries= and retry_delay=: WhatsInfinity's transient errors fail the task "
                "so that they apply, and permanent ones fail it at once.",
            )
        self.min_delay = min_delay

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        """
        Decide whether a failed WhatsInfinity task is retried, and when.

        :param exception: What the task raised.
        :param try_number: The try that failed (1-based).
        :param max_tries: The task's most tries.
        :param context: The task's context.
        """
        error = _whatsinfinity_error_in(exception)
        if error is None:
            return RetryDecision.default()
        if isinstance(error, RateLimitedError):
            delay = max(timedelta(seconds=error.retry_after or 0), self.min_delay)
            return RetryDecision.retry(
                delay, f"WhatsInfinity rate limit: retrying in {delay.total_seconds():.0f} s"
            )
        if error.transient:
            return RetryDecision.default()
        return RetryDecision.fail(f"{type(error).__name__} is permanent: {error}")

    def serialize(self) -> dict[str, Any]:
        """Return the policy as JSON-safe data."""
        return {"__type": type(self).__name__, "min_delay": self.min_delay.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> WhatsInfinityRetryPolicy:
        """Rebuild a policy from :meth:`serialize`'s data. :param data: The data."""
        return cls(min_delay=timedelta(seconds=data.get("min_delay", 5)))


def _whatsinfinity_error_in(exception: BaseException) -> WhatsInfinityError | None:
    seen: BaseException | None = exception
    while seen is not None:
        if isinstance(seen, WhatsInfinityError):
            return seen
        seen = seen.__cause__
    return None
