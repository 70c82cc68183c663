"""
What differs between Airflow 3 releases, in one place: imports that moved, and features checks.

CI runs the whole suite on the newest 3.0, 3.1, 3.2 and 3.3. Code elsewhere asks this module whether
a feature exists (``HAS_RETRY_POLICY``) and calls :func:`needs_airflow` when it does not; it never
compares version numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
except ImportError:  # Airflow < 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined,unused-ignore]

try:
    from airflow.sdk.exceptions import AirflowOptionalProviderFeatureException
except ImportError:  # Airflow < 3.2
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowOptionalProviderFeatureException,
    )

try:
    from airflow.sdk import RetryDecision, RetryPolicy

    #: Whether tasks take ``retry_policy=`` (Airflow 3.3+).
    HAS_RETRY_POLICY = True
except ImportError:  # Airflow < 3.3

    class RetryPolicy:  # type: ignore[no-redef]
        """Stands in for ``airflow.sdk.RetryPolicy`` where Airflow has none, so that subclasses import."""

    RetryDecision = None  # type: ignore[assignment,misc]
    HAS_RETRY_POLICY = False

try:
    from airflow.sdk import conf
except ImportError:  # Airflow < 3.2
    from airflow.configuration import conf  # type: ignore[assignment]

try:
    from airflow.sdk._shared.secrets_masker import redact as _redact
except ImportError:  # Airflow < 3.2
    from airflow.sdk.execution_time.secrets_masker import redact as _redact  # type: ignore[no-redef]

try:
    from airflow.sdk.log import mask_secret as _mask_secret
except ImportError:  # Airflow < 3.1
    from airflow.sdk.execution_time.secrets_masker import mask_secret as _mask_secret  # type: ignore[no-redef]

__all__ = [
    "HAS_RETRY_POLICY",
    "AirflowException",
    "AirflowFailException",
    "AirflowOptionalProviderFeatureException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "RetryDecision",
    "RetryPolicy",
    "aget_connection",
    "airflow_version",
    "conf",
    "delete_task_variable",
    "mask_secret",
    "needs_airflow",
    "read_task_variable",
    "redact",
    "run_blocking",
    "task_instance_state",
    "write_task_variable",
]


def airflow_version() -> str:
    """Return the installed Airflow's version, for messages (never for decisions: see the module)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("apache-airflow")
    except PackageNotFoundError:  # pragma: no cover - Airflow from a source tree
        import airflow

        return str(airflow.__version__)


def needs_airflow(feature: str, release: str, instead: str = "") -> NoReturn:
    """
    Refuse a feature this Airflow lacks, saying which release brings it.

    :param feature: What was asked for, such as ``"WhatsInfinityRetryPolicy (retry_policy=)"``.
    :param release: The first Airflow release that has it, such as ``"3.3"``.
    :param instead: What to do on this Airflow instead, as a sentence.
    """
    raise AirflowOptionalProviderFeatureException(
        f"{feature} needs Airflow {release}+; this is Airflow {airflow_version()}. {instead}".rstrip()
    )


def mask_secret(secret: str) -> None:
    """
    Register a secret with Airflow's secret masker, so that it shows as ``***`` in every log.

    :param secret: The secret, such as an API key.
    """
    _mask_secret(secret)


def redact(text: str) -> str:
    """
    Return text with every secret the masker knows replaced by ``***``.

    Logs are masked by Airflow; text that leaves Airflow, such as an alert sent to a phone, is not.

    :param text: The text to clean.
    """
    cleaned: Any = _redact(text)
    return str(cleaned)


async def aget_connection(hook: Any, conn_id: str) -> Any:
    """
    Return a connection from async code: ``hook.aget_connection`` where Airflow has it (3.1+).

    Airflow 3.0 has only the blocking lookup, run through :func:`run_blocking` so that the event loop
    (the triggerer's) is never blocked.

    :param hook: The hook asking.
    :param conn_id: The connection's ID.
    """
    if hasattr(hook, "aget_connection"):
        return await hook.aget_connection(conn_id)
    return await run_blocking(hook.get_connection, conn_id)


async def run_blocking(function: Callable[..., T], *args: Any) -> T:
    """
    Run a blocking call from async code, where Task SDK calls work from a triggerer too.

    Airflow 3.0's triggerer answers Task SDK calls (a connection lookup, ``mask_secret``) through
    asgiref's ``async_to_sync`` bound to its event loop: called on that loop they fail ("You cannot
    use AsyncToSync in the same thread as an async event loop"), and from a thread of
    ``asyncio.to_thread`` they fail too (a future "attached to a different loop", then the trigger
    runner dies). asgiref's ``sync_to_async`` is the way that works on every Airflow 3.

    :param function: The blocking callable.
    :param args: Its arguments.
    """
    from asgiref.sync import sync_to_async

    return await sync_to_async(function)(*args)


# --- Airflow Variables read and written strictly, for the delivery record where task_state_store is
# missing (Airflow < 3.3). ``Variable.set`` logs a failed write and returns, and ``Variable.get`` may
# answer from a secrets cache; a record that must never lie talks to the task's supervisor directly,
# with the messages every Airflow 3 Task SDK has, and lets every error through.


def read_task_variable(key: str) -> str | None:
    """
    Return an Airflow Variable's value as the API server reads it, or ``None`` when it answers "not found".

    Only from inside a running task. Every other answer (the API server unreachable, access refused,
    anything but a variable) is raised. The server reads through its own secrets backends and answers
    "not found" when they fail (a metastore error, a wrong Fernet key): a caller that must not take a
    failure for "unset" checks the read path itself (see ``VariableStore``).

    :param key: The Variable's key.
    """
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    try:
        answer = SUPERVISOR_COMMS.send(GetVariable(key=key))
    except AirflowRuntimeError as error:  # an error frame: raised as it is, unless it is "not found"
        if error.error.error == ErrorType.VARIABLE_NOT_FOUND:
            return None
        raise
    if isinstance(answer, ErrorResponse):  # Airflow 3.0 to 3.2 answer "not found" in the body
        if answer.error == ErrorType.VARIABLE_NOT_FOUND:
            return None
        raise AirflowRuntimeError(answer)
    if type(answer).__name__ != "VariableResult" or not isinstance(getattr(answer, "value", None), str):
        raise TypeError(f"unexpected answer to reading Variable {key!r}: {type(answer).__name__}")
    return str(answer.value)  # type: ignore[union-attr]


def write_task_variable(key: str, value: str, description: str) -> None:
    """
    Create or replace an Airflow Variable, raising when the write did not happen.

    :param key: The Variable's key.
    :param value: Its value.
    :param description: What it is, shown in the Variables list of the UI.
    """
    from airflow.sdk.execution_time.comms import PutVariable
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    SUPERVISOR_COMMS.send(PutVariable(key=key, value=value, description=description))


def task_instance_state(ti: Any) -> str | None:
    """
    Return a running task instance's state as the API server has it now (``"running"``, ``"success"``).

    :param ti: The task instance (``context["ti"]``).
    """
    map_index = getattr(ti, "map_index", None)
    mapped = map_index is not None and map_index >= 0
    states = ti.get_task_states(
        dag_id=ti.dag_id,
        map_index=map_index if mapped else None,
        task_ids=[ti.task_id],
        run_ids=[ti.run_id],
    )
    state = states.get(ti.run_id, {}).get(f"{ti.task_id}_{map_index}" if mapped else ti.task_id)
    return None if state is None else str(getattr(state, "value", state))


def delete_task_variable(key: str) -> None:
    """
    Delete an Airflow Variable, raising when the delete did not happen.

    :param key: The Variable's key.
    """
    from airflow.sdk.execution_time.comms import DeleteVariable
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    SUPERVISOR_COMMS.send(DeleteVariable(key=key))
