"""
Imports that moved between Airflow 3 releases, in one place.

The provider is tested on Airflow 3.3; these fallbacks keep its modules importable on 3.0 to 3.2,
where ``airflow.sdk`` did not yet carry everything it does now.
"""

from __future__ import annotations

from typing import Any

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
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "aget_connection",
    "conf",
    "mask_secret",
    "redact",
]


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

    Airflow 3.0 has only the blocking lookup, run here in a thread so that the event loop (the
    triggerer's) is never blocked.

    :param hook: The hook asking.
    :param conn_id: The connection's ID.
    """
    if hasattr(hook, "aget_connection"):
        return await hook.aget_connection(conn_id)
    import asyncio

    return await asyncio.to_thread(hook.get_connection, conn_id)
