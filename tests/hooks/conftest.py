from __future__ import annotations

import json

import pytest

from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
from tests.conftest import KEY, SESSION


def connection_json(url: str, login: str = SESSION, password: str = KEY, **extra) -> str:
    return json.dumps(
        {"conn_type": "whatsinfinity", "host": url, "login": login, "password": password, "extra": extra}
    )


@pytest.fixture
def hook(whatsinfinity_emulator, monkeypatch) -> WhatsInfinityHook:
    """A hook on the default connection, pointed at the emulator through AIRFLOW_CONN_..."""
    monkeypatch.setenv("AIRFLOW_CONN_WHATSINFINITY_DEFAULT", connection_json(whatsinfinity_emulator.url))
    return WhatsInfinityHook()
