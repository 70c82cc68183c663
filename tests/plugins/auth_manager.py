"""
An auth manager for the console's tests: Airflow's simple one, with viewers allowed to read connections.

The simple auth manager gives reading and editing connections to the same role (op), so it cannot
show a user who may read connections but not edit them. This one can: its ``viewer`` role may read
connections (and so list the console's sessions) and still edit nothing. The api-server of
``conftest.py`` loads it by its dotted path.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class ConnectionReadingViewersAuthManager(SimpleAuthManager):
    """The simple auth manager, except that the viewer role may read (GET) connections."""

    def is_authorized_connection(self, *, method: Any, user: Any, details: Any = None) -> bool:
        """Allow a viewer to read connections; anything else as the simple auth manager decides."""
        if method == "GET" and str(user.role or "").upper() == "VIEWER":
            return True
        return bool(super().is_authorized_connection(method=method, user=user, details=details))
