"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_whatsinfinity import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider's description in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-whatsinfinity",
        "name": "WhatsInfinity",
        "description": "Send WhatsApp messages and media through the WhatsInfinity API.",
        "versions": [__version__],
    }
