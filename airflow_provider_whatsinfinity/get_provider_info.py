"""
Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

This module stays light: Airflow imports it at start-up, before any hook. The connection form
(``conn-fields`` and ``ui-field-behaviour``) is defined here, from the defaults in
:mod:`airflow_provider_whatsinfinity.spec`, and the hook's pre-3.2 form methods are derived from the
same constants so that the two can never disagree.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsinfinity import __version__
from airflow_provider_whatsinfinity.spec import (
    CONN_TYPE,
    DEFAULT_BASE_URL,
    DEFAULT_CONN_ID,
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    DEFAULT_TIMEOUT,
    MIN_API_KEY_LENGTH,
)

# Re-exported: earlier versions defined these here.
__all__ = [
    "CONN_FIELDS",
    "CONN_TYPE",
    "DEFAULT_CONN_ID",
    "DEFAULT_MAX_RATE_LIMIT_WAIT",
    "DEFAULT_TIMEOUT",
    "UI_FIELD_BEHAVIOUR",
    "get_provider_info",
]

HOOK_CLASS = "airflow_provider_whatsinfinity.hooks.whatsinfinity.WhatsInfinityHook"

#: The connection's extras, as Airflow 3.2+ draws them in the connection form.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": DEFAULT_TIMEOUT, "exclusiveMinimum": 0},
        "description": "Seconds allowed for each request to WhatsInfinity.",
    },
    "max_rate_limit_wait": {
        "label": "Max rate-limit wait (seconds)",
        "schema": {"type": ["number", "null"], "default": DEFAULT_MAX_RATE_LIMIT_WAIT, "minimum": 0},
        "description": "Longest total wait for 429 answers in one call before giving up.",
    },
}

#: Which standard connection fields are used, and how they are labelled.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "extra"],
    "relabeling": {"host": "Base URL", "login": "Session ID", "password": "API key"},
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "login": "mysession",
        "password": f"the session's API key ({MIN_API_KEY_LENGTH}+ characters)",
        "timeout": str(int(DEFAULT_TIMEOUT)),
        "max_rate_limit_wait": str(int(DEFAULT_MAX_RATE_LIMIT_WAIT)),
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's description in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-whatsinfinity",
        "name": "WhatsInfinity",
        "description": "Send WhatsApp messages and media through the WhatsInfinity API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "WhatsInfinity",
                "external-doc-url": DEFAULT_BASE_URL,
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "WhatsInfinity",
                "python-modules": ["airflow_provider_whatsinfinity.operators.whatsinfinity"],
            }
        ],
        "sensors": [
            {
                "integration-name": "WhatsInfinity",
                "python-modules": ["airflow_provider_whatsinfinity.sensors.whatsinfinity"],
            }
        ],
        "hooks": [
            {
                "integration-name": "WhatsInfinity",
                "python-modules": ["airflow_provider_whatsinfinity.hooks.whatsinfinity"],
            }
        ],
        "triggers": [
            {
                "integration-name": "WhatsInfinity",
                "python-modules": [
                    "airflow_provider_whatsinfinity.triggers.whatsinfinity",
                    "airflow_provider_whatsinfinity.triggers.rate_window",
                ],
            }
        ],
        "notifications": ["airflow_provider_whatsinfinity.notifications.whatsinfinity.WhatsInfinityNotifier"],
        "plugins": [
            {
                "name": "whatsinfinity_console",
                "plugin-class": "airflow_provider_whatsinfinity.plugins.console.WhatsInfinityConsolePlugin",
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS,
                "hook-name": "WhatsInfinity",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
