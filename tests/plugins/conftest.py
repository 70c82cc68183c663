"""
A real ``airflow api-server`` with the simple auth manager and two users, for the console's API.

As tests/ui/conftest.py's fixture, but with logins: ``admin`` (role admin) and ``viewer`` (role
viewer), their passwords read from the file the simple auth manager writes, their tokens from
``POST /auth/token``. The auth manager is the simple one with viewers allowed to read connections
(:mod:`tests.plugins.auth_manager`), so that a user who may read connections but not edit them exists.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.airflow_api_server import running_api_server
from tests.plugins.auth_manager import ConnectionReadingViewersAuthManager

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]


@dataclass
class AirflowServer:
    """A running api-server: its URL, its environment (for the CLI), and a token per user."""

    url: str
    env: dict[str, str]
    tokens: dict[str, str]
    log: Path

    def add_connection(self, host: str, login: str, password: str) -> str:
        """Store a ``whatsinfinity`` connection through the REST API as admin; return its new ID."""
        conn_id = f"wi_{uuid.uuid4().hex[:8]}"
        body = {"connection_id": conn_id, "conn_type": "whatsinfinity", "host": host, "login": login}
        with self.client("admin") as admin:
            answer = admin.post("/api/v2/connections", json={**body, "password": password})
        assert answer.status_code == 201, answer.text
        return conn_id

    def client(self, user: str | None) -> httpx.Client:
        """An HTTP client for the server, logged in as ``user`` (anonymous for ``None``)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="package")
def airflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """A migrated throw-away Airflow home and `airflow api-server` with users admin and viewer."""
    home = tmp_path_factory.mktemp("airflow-console-home")
    auth_manager = ConnectionReadingViewersAuthManager
    with running_api_server(
        home,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer",
        AIRFLOW__CORE__AUTH_MANAGER=f"{auth_manager.__module__}.{auth_manager.__name__}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    ) as (url, env):
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        tokens = {}
        for user in ("admin", "viewer"):
            answer = httpx.post(
                f"{url}/auth/token", json={"username": user, "password": passwords[user]}, timeout=30
            )
            assert answer.status_code in (200, 201), answer.text
            tokens[user] = answer.json()["access_token"]
        yield AirflowServer(url=url, env=env, tokens=tokens, log=home / "api-server.log")
