"""The CeleryExecutor suite runs only when asked for (``pytest -m celery``, ``make test-celery``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    Deselect the tests marked ``celery`` unless the ``-m`` expression names that marker.

    They start Redis, two Celery workers and a whole Airflow, and need the ``celery`` extra: `make
    test` leaves them to `make test-celery`, which CI runs as a step of its own.
    """
    if "celery" in (config.getoption("markexpr") or ""):
        return
    celery = [item for item in items if item.get_closest_marker("celery")]
    if celery:
        config.hook.pytest_deselected(items=celery)
        items[:] = [item for item in items if not item.get_closest_marker("celery")]
