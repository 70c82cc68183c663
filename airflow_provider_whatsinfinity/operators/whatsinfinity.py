"""
The WhatsInfinity operators, under the import path the README and DAGs use.

They live in modules by job: :mod:`~airflow_provider_whatsinfinity.operators.send` (the send
operators and their delivery semantics), :mod:`~airflow_provider_whatsinfinity.operators.session`
(managing the session) and :mod:`~airflow_provider_whatsinfinity.operators.base` (what they share).
The helpers once defined here still import from here: media URL signing lives in
:mod:`~airflow_provider_whatsinfinity.media_urls`, and ``as_bool``, ``recipients_of`` and
``raise_for_task`` in :mod:`~airflow_provider_whatsinfinity.task_helpers`.

Each name is imported from its module on first use, as ``airflow.sdk`` does: a DAG file that only
sends messages does not pay for building the session operators too (about half a millisecond).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.media_urls import (
        OBJECT_STORAGE_SCHEMES,
        SIGNED_URL_EXPIRY,
        public_url_for,
    )
    from airflow_provider_whatsinfinity.operators.base import WhatsInfinityBaseOperator
    from airflow_provider_whatsinfinity.operators.send import (
        WhatsInfinitySendMediaOperator,
        WhatsInfinitySendTextOperator,
    )
    from airflow_provider_whatsinfinity.operators.session import (
        ROTATION_SETTLE_MAX,
        WhatsInfinityCreateSessionOperator,
        WhatsInfinityDeleteSessionOperator,
        WhatsInfinityPairingCodeOperator,
        WhatsInfinityQrCodeOperator,
        WhatsInfinityRestartSessionOperator,
        WhatsInfinityRotateKeyOperator,
    )
    from airflow_provider_whatsinfinity.task_helpers import as_bool, raise_for_task, recipients_of

#: The ``task_state_store`` key written by versions up to 0.1 (read once after an upgrade); the
#: record now lives under :attr:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord.KEY`.
ACCEPTED_KEY = "whatsinfinity_accepted"

__all__ = [
    "ACCEPTED_KEY",
    "OBJECT_STORAGE_SCHEMES",
    "ROTATION_SETTLE_MAX",
    "SIGNED_URL_EXPIRY",
    "WhatsInfinityBaseOperator",
    "WhatsInfinityCreateSessionOperator",
    "WhatsInfinityDeleteSessionOperator",
    "WhatsInfinityPairingCodeOperator",
    "WhatsInfinityQrCodeOperator",
    "WhatsInfinityRestartSessionOperator",
    "WhatsInfinityRotateKeyOperator",
    "WhatsInfinitySendMediaOperator",
    "WhatsInfinitySendTextOperator",
    "as_bool",
    "public_url_for",
    "raise_for_task",
    "recipients_of",
]

_PACKAGE = "airflow_provider_whatsinfinity"
#: Where each name lives.
_HOMES = {
    "OBJECT_STORAGE_SCHEMES": f"{_PACKAGE}.media_urls",
    "SIGNED_URL_EXPIRY": f"{_PACKAGE}.media_urls",
    "public_url_for": f"{_PACKAGE}.media_urls",
    "as_bool": f"{_PACKAGE}.task_helpers",
    "raise_for_task": f"{_PACKAGE}.task_helpers",
    "recipients_of": f"{_PACKAGE}.task_helpers",
    "WhatsInfinityBaseOperator": f"{_PACKAGE}.operators.base",
    "WhatsInfinitySendMediaOperator": f"{_PACKAGE}.operators.send",
    "WhatsInfinitySendTextOperator": f"{_PACKAGE}.operators.send",
    "ROTATION_SETTLE_MAX": f"{_PACKAGE}.operators.session",
    "WhatsInfinityCreateSessionOperator": f"{_PACKAGE}.operators.session",
    "WhatsInfinityDeleteSessionOperator": f"{_PACKAGE}.operators.session",
    "WhatsInfinityPairingCodeOperator": f"{_PACKAGE}.operators.session",
    "WhatsInfinityQrCodeOperator": f"{_PACKAGE}.operators.session",
    "WhatsInfinityRestartSessionOperator": f"{_PACKAGE}.operators.session",
    "WhatsInfinityRotateKeyOperator": f"{_PACKAGE}.operators.session",
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from the module it lives in, once."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    """List the names imported so far and those imported on first use."""
    return sorted({*globals(), *__all__})
