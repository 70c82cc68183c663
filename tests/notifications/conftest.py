"""
What the installed Airflow's BaseNotifier does, found by trying it rather than by its version.

- Awaiting a notifier (``await notifier``, how the triggerer runs deadline alerts) needs
  ``BaseNotifier.__await__``, which Airflow 3.0 lacks.
- ``BaseNotifier.__call__`` re-raises the error of ``notify()`` on Airflow 3.1+; Airflow 3.0 logs it
  and returns. :func:`notify_raises` expects the error either way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import BaseNotifier

from tests.common import captured_logs, needs_airflow_feature

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Whether a notifier can be awaited, as the triggerer runs a deadline alert's (Airflow 3.1+).
HAS_ASYNC_NOTIFIERS = hasattr(BaseNotifier, "__await__")

#: Skips a test that awaits a notifier on an Airflow that cannot.
needs_async_notifiers = needs_airflow_feature(
    HAS_ASYNC_NOTIFIERS, "async notifiers (deadline alerts in the triggerer)", "3.1"
)


_PROBE_LOG = logging.getLogger("tests.notifications.probe")
_PROBE_LOG.propagate = False
_PROBE_LOG.addHandler(logging.NullHandler())


class _ProbeError(Exception):
    pass


class _Probe(BaseNotifier):
    """A notifier whose notify always fails, logging to a logger nobody reads."""

    @property
    def log(self) -> Any:  # instead of LoggingMixin's: the probe's failure is no news
        return _PROBE_LOG

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        pass  # nothing to render; Airflow 3.0 would want a DAG in the context

    def notify(self, context: Any) -> None:
        raise _ProbeError("probe")


@functools.cache
def notifier_call_reraises() -> bool:
    """Whether ``BaseNotifier.__call__`` lets the error of ``notify()`` through (Airflow 3.1+)."""
    try:
        _Probe()({})
    except _ProbeError:
        return True
    return False


@contextlib.contextmanager
def notify_raises(expected: type[BaseException], match: str | None = None) -> Iterator[None]:
    """
    Expect a notifier called in the block to fail with ``expected``.

    Where Airflow re-raises the error of ``notify()`` this is ``pytest.raises``; where it logs it and
    returns (Airflow 3.0), the error must be the one Airflow logged with its traceback.
    """
    if notifier_call_reraises():
        with pytest.raises(expected, match=match):
            yield
        return
    with captured_logs() as logs:
        yield
    logged = [entry["exc_info"] for entry in logs if "exc_info" in entry]
    assert any(
        isinstance(error, expected) and (match is None or re.search(match, str(error))) for error in logged
    ), f"notify() did not fail with {expected.__name__}: {logs}"
