"""Values every test shares: the default session, its key, a phone number, a connection's JSON."""

from __future__ import annotations

import json

import pytest

from airflow_provider_whatsinfinity._compat import airflow_version

SESSION = "mysession"
KEY = "your-session-api-key"
PHONE = "919999999999"


def connection_json(url: str, login: str = SESSION, password: str = KEY, **extra: object) -> str:
    """An AIRFLOW_CONN_... value in JSON form for a WhatsInfinity connection."""
    return json.dumps(
        {"conn_type": "whatsinfinity", "host": url, "login": login, "password": password, "extra": extra}
    )


def needs_airflow_feature(present: bool, feature: str, release: str) -> pytest.MarkDecorator:
    """Skip a test on an Airflow without a feature; the reason names the version and the feature."""
    return pytest.mark.skipif(
        not present, reason=f"Airflow {airflow_version()} has no {feature} (Airflow {release}+)"
    )
