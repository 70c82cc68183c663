"""
An auth manager for the console's tests: Airflow's simple one, with viewers allowed to read connections.

The simple auth manager gives reading and editing connections to the same role (op), so it cannot
show a user who may read connections but not edit them. This one can: its ``viewer`` role may read
connections (and so list the console's sessions), but not those whose ID starts with ``private_``,
and still edit nothing. The api-server of ``conftest.py`` loads it by its dotted path.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

#: Connections whose ID starts with this are hidden from viewers: a per-connection permission.
PRIVATE_PREFIX = "private_"


class ConnectionReadingViewersAuthManager(SimpleAuthManager):
    """The simple auth manager, except that the viewer role may read (GET) connections, but private ones."""

    def is_authorized_connection(self, *, method: Any, user: Any, details: Any = None) -> bool:
        """Allow a viewer to read connections but private ones; else as the simple auth manager decides."""
        if method == "GET" and str(user.role or "").upper() == "VIEWER":
            conn_id = getattr(details, "conn_id", None) or ""
            return not conn_id.startswith(PRIVATE_PREFIX)
        return bool(super().is_authorized_connection(method=method, user=user, details=details))
