"""
Pytest fixture ``whatsinfinity_emulator``, registered through the ``pytest11`` entry point.

By default every test shares one emulator, reset before each test. A test that needs other
settings asks for its own instance with a marker::

    @pytest.mark.whatsinfinity_emulator(rate_limit=3, rate_window=2)
    def test_backoff(whatsinfinity_emulator): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.emulator.server import RunningEmulator

# Fast defaults for tests: no typing pause and a quick reconnect, the documented limits otherwise.
TEST_SETTINGS = {"typing_delay": 0.0, "connect_delay": 0.2}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``whatsinfinity_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "whatsinfinity_emulator(**settings): run this test against its own emulator with these "
        "EmulatorConfig settings",
    )


@pytest.fixture(scope="session")
def _whatsinfinity_shared_emulator() -> Iterator[RunningEmulator]:
    from airflow_provider_whatsinfinity.emulator.server import run_emulator

    with run_emulator(**TEST_SETTINGS) as emulator:  # type: ignore[arg-type]
        yield emulator


@pytest.fixture
def whatsinfinity_emulator(request: pytest.FixtureRequest) -> Iterator[RunningEmulator]:
    """
    A WhatsInfinity emulator on a free loopback port, empty at the start of the test.

    Requests that an earlier test left in flight (delayed by a fault, "typing", fetching media) are
    cut off by the reset: they cannot land in this test's outbox.

    Yields a :class:`~airflow_provider_whatsinfinity.emulator.server.RunningEmulator`: its ``url``
    and the helpers of :class:`~airflow_provider_whatsinfinity.emulator.control.EmulatorControl` for
    the control API (``create_session``, ``link``, ``outbox``, ``add_fault``, ...).
    """
    marker = request.node.get_closest_marker("whatsinfinity_emulator")
    if marker is None:
        shared: RunningEmulator = request.getfixturevalue("_whatsinfinity_shared_emulator")
        shared.reset()
        yield shared
        return
    from airflow_provider_whatsinfinity.emulator.server import run_emulator

    with run_emulator(**{**TEST_SETTINGS, **marker.kwargs}) as emulator:
        yield emulator
