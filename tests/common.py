"""Values every test shares: the default session, its key, a phone number, a connection's JSON."""

from __future__ import annotations

import json

SESSION = "mysession"
KEY = "your-session-api-key"
PHONE = "919999999999"


def connection_json(url: str, login: str = SESSION, password: str = KEY, **extra: object) -> str:
    """An AIRFLOW_CONN_... value in JSON form for a WhatsInfinity connection."""
    return json.dumps(
        {"conn_type": "whatsinfinity", "host": url, "login": login, "password": password, "extra": extra}
    )
