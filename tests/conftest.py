from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator import RunningEmulator

SESSION = "mysession"
KEY = "your-session-api-key"
PHONE = "919999999999"


@pytest.fixture
def api(whatsinfinity_emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """A plain HTTP client on the emulator, sending the default session's key."""
    with httpx.Client(base_url=whatsinfinity_emulator.url, headers={"x-api-key": KEY}, timeout=30) as client:
        yield client


@pytest.fixture
def linked(whatsinfinity_emulator: RunningEmulator) -> RunningEmulator:
    """The emulator with the default session created and linked."""
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    return whatsinfinity_emulator
