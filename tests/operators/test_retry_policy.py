"""WhatsInfinityRetryPolicy's decisions for each kind of error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_whatsinfinity import exceptions as wi
from airflow_provider_whatsinfinity._compat import (
    HAS_RETRY_POLICY,
    AirflowFailException,
    AirflowOptionalProviderFeatureException,
    airflow_version,
)
from airflow_provider_whatsinfinity.retry_policy import WhatsInfinityRetryPolicy
from tests.common import needs_airflow_feature

if HAS_RETRY_POLICY:
    from airflow.sdk import RetryAction

needs_retry_policies = needs_airflow_feature(HAS_RETRY_POLICY, "retry policies", "3.3")


def decide(error: BaseException):
    return WhatsInfinityRetryPolicy(min_delay=timedelta(seconds=5)).evaluate(error, try_number=1, max_tries=3)


@pytest.mark.skipif(HAS_RETRY_POLICY, reason="this Airflow has retry policies")
def test_without_retry_policies_building_one_says_which_airflow_it_needs():
    with pytest.raises(AirflowOptionalProviderFeatureException) as raised:
        WhatsInfinityRetryPolicy()
    assert str(raised.value).startswith(
        f"WhatsInfinityRetryPolicy (retry_policy=) needs Airflow 3.3+; this is Airflow {airflow_version()}."
    )
    assert "retries=" in str(raised.value)


@needs_retry_policies
def test_rate_limited_waits_retry_after():
    decision = decide(wi.RateLimitedError("429", retry_after=42))
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == timedelta(seconds=42)


@needs_retry_policies
def test_rate_limited_waits_at_least_min_delay():
    assert decide(wi.RateLimitedError("429", retry_after=1)).retry_delay == timedelta(seconds=5)
    assert decide(wi.RateLimitedError("429")).retry_delay == timedelta(seconds=5)


@needs_retry_policies
@pytest.mark.parametrize("error", [wi.QueueFullError, wi.ServerError, wi.ServiceUnreachableError])
def test_transient_errors_use_the_tasks_own_retries(error):
    assert decide(error("x")).action is RetryAction.DEFAULT


@needs_retry_policies
@pytest.mark.parametrize(
    "error",
    [
        wi.ValidationError,
        wi.AuthenticationError,
        wi.SessionNotFoundError,
        wi.ConflictError,
        wi.NotOnWhatsAppError,
        wi.OutcomeUnknownError,
    ],
)
def test_permanent_errors_fail_at_once(error):
    decision = decide(error("x", request_id="req-9"))
    assert decision.action is RetryAction.FAIL
    assert "req-9" in (decision.reason or "")


@needs_retry_policies
def test_errors_wrapped_by_an_operator_are_found():
    wrapped = AirflowFailException("failed")
    wrapped.__cause__ = wi.RateLimitedError("429", retry_after=30)
    assert decide(wrapped).retry_delay == timedelta(seconds=30)


@needs_retry_policies
def test_other_errors_are_left_to_airflow():
    assert decide(RuntimeError("boom")).action is RetryAction.DEFAULT


@needs_retry_policies
def test_serialize_round_trip():
    data = WhatsInfinityRetryPolicy(min_delay=timedelta(seconds=5)).serialize()
    assert data == {"__type": "WhatsInfinityRetryPolicy", "min_delay": 5.0}
    assert WhatsInfinityRetryPolicy.deserialize(data).min_delay == timedelta(seconds=5)
