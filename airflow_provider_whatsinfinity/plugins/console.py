"""
The sessions console, registered with Airflow as the provider's plugin ``whatsinfinity_console``.

Airflow imports this module wherever it loads plugins, the DAG processor and task runs included, so
it stays light: the FastAPI app (:mod:`~airflow_provider_whatsinfinity.plugins.sessions_api`) is
imported and built only when something reads ``fastapi_apps``, which only the API server does (and
``airflow plugins``).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: Where the API server mounts the console's app.
URL_PREFIX = "/whatsinfinity"


class _LazyFastAPIApps:
    """``fastapi_apps`` built on first read, from the class or an instance (a non-data descriptor)."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        if self._apps is None:
            from airflow_provider_whatsinfinity.plugins.sessions_api import create_app

            self._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "WhatsInfinity sessions"}]
        return self._apps


class WhatsInfinityConsolePlugin(AirflowPlugin):
    """
    The WhatsInfinity sessions console: a page at ``/whatsinfinity/``, its JSON API under ``api/sessions``.

    On Airflow 3.1+ the page is also in the UI's Admin menu (``external_views``) and opens inside the
    UI; on 3.0 it works at its URL.

    It lists every connection of type ``whatsinfinity`` with its session's status, and links,
    restarts, re-keys and deletes sessions. Every endpoint needs an Airflow user: reading the list
    needs permission to read connections, everything else permission to edit them.
    """

    name = "whatsinfinity_console"
    fastapi_apps = _LazyFastAPIApps()
    if hasattr(AirflowPlugin, "external_views"):  # Airflow 3.1+: in the UI's own navigation
        external_views = [
            {
                "name": "WhatsInfinity sessions",
                "href": f"{URL_PREFIX}/",
                # Opens inside the Airflow UI, at /plugin/whatsinfinity.
                "url_route": "whatsinfinity",
                "category": "admin",
                "destination": "nav",
            }
        ]


def _for_the_entry_point() -> type[WhatsInfinityConsolePlugin] | None:
    """
    Return the plugin for the ``airflow.plugins`` entry point, or ``None`` where Airflow loads it anyway.

    Airflow reads the ``plugins`` of providers' info only with ``[core] lazy_discover_providers =
    False``, and it reads entry points first: with both, it would load the plugin twice and report the
    second as an import error. ``None`` is not a plugin, and Airflow passes over it without a word.
    """
    from airflow import settings

    return WhatsInfinityConsolePlugin if getattr(settings, "LAZY_LOAD_PROVIDERS", True) else None


#: What the ``airflow.plugins`` entry point names (pyproject.toml).
ENTRY_POINT_PLUGIN = _for_the_entry_point()
