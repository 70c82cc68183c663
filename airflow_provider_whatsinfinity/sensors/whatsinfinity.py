"""A sensor that waits until a WhatsInfinity session is ready to send."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_whatsinfinity._compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    conf,
)
from airflow_provider_whatsinfinity.exceptions import WhatsInfinityError
from airflow_provider_whatsinfinity.hook_lifecycle import WhatsInfinityHookMixin
from airflow_provider_whatsinfinity.spec import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context


class WhatsInfinitySessionReadySensor(WhatsInfinityHookMixin, BaseSensorOperator):
    """
    Wait until check-session says the session ``isReady``, in poke, reschedule or deferrable mode.

    Each check logs the status, queueSize and any warning. A ``disabled`` session fails the task at
    once: it will not become ready by itself. Transient errors (service unreachable, server errors)
    count as "not ready yet"; permanent ones (wrong key, unknown session) fail the task.

    Its hook is closed when the wait ends, in every mode: when it succeeds or fails, between two
    checks in ``reschedule`` mode, and once the first check has handed over to the trigger.

    .. code-block:: python

        WhatsInfinitySessionReadySensor(task_id="wait_for_session", deferrable=True, poke_interval=30)

    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :param hook_params: More arguments for :class:`WhatsInfinityHook`, such as ``timeout`` or
        ``max_attempts``, for the checks made in a worker (the trigger uses the connection's own).
    :param deferrable: Wait in the triggerer instead of a worker slot.
    :return: The session's status when ready, as a dict (XCom).
    """

    template_fields: Sequence[str] = ("whatsinfinity_conn_id",)
    ui_color = "#25d366"

    def __init__(
        self,
        *,
        whatsinfinity_conn_id: str = DEFAULT_CONN_ID,
        hook_params: dict[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.hook_params = hook_params or {}
        self.deferrable = deferrable

    def poke(self, context: Context) -> PokeReturnValue:
        """Check the session once."""
        try:
            status = self.hook.check_session()
        except WhatsInfinityError as error:
            if error.transient:
                self.log.warning("Session check failed, will check again: %s", error)
                return PokeReturnValue(is_done=False)
            raise AirflowFailException(
                f"Cannot wait for the session: {type(error).__name__}: {error}"
            ) from error
        self.log.info("WhatsInfinity %s", status.summary())
        _fail_if_disabled(status.session_id, status.status)
        return PokeReturnValue(is_done=status.is_ready, xcom_value=status.to_dict())

    def execute(self, context: Context) -> Any:
        """Wait for the session: poke in a worker, or check once and then defer to the trigger."""
        try:
            if not self.deferrable:
                return super().execute(context)
            return self._check_then_defer(context)
        finally:
            # Also when a reschedule or the deferral ends this run: the wait goes on elsewhere.
            self.close_hook()

    def _check_then_defer(self, context: Context) -> Any:
        """Check once in the worker; if the session is not ready yet, defer to the trigger."""
        try:
            first = self.poke(context)
        except (AirflowFailException, AirflowSensorTimeout) as error:
            # BaseSensorOperator.execute turns these into skips under soft_fail / never_fail; the
            # first check of a deferrable sensor bypasses it, so it does the same here.
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(
                    f"Skipping ({'soft_fail' if self.soft_fail else 'never_fail'}): {error}"
                ) from error
            raise
        if first.is_done:
            return first.xcom_value
        from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionReadyTrigger

        timeout = float(self.timeout)
        self.defer(
            trigger=WhatsInfinitySessionReadyTrigger(
                whatsinfinity_conn_id=self.whatsinfinity_conn_id,
                poke_interval=float(self.poke_interval),
                timeout_at=time.time() + timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        """
        Finish after the trigger's event.

        :param event: The trigger's
            :class:`~airflow_provider_whatsinfinity.triggers.whatsinfinity.SessionReadyEvent`
            (``{"outcome", "session", "error"}``), or an event that an older version of this provider
            left in the database before an upgrade, which named the outcome ``status``.
        """
        # Versions up to 0.1 put the outcome under "status", beside the session's own "status".
        outcome = event.get("outcome", event.get("status"))
        session = event.get("session") or {}
        if outcome == "ready":
            self.log.info("Session %s is ready", session.get("session_id"))
            return dict(session)
        if outcome == "disabled":
            _fail_if_disabled(session.get("session_id"), "disabled")
        if outcome == "timeout":
            raise AirflowSensorTimeout(
                f"Session of connection {self.whatsinfinity_conn_id!r} was not ready after {self.timeout} s "
                f"(last status: {session.get('status', 'unknown')})"
            )
        error = event.get("error") or {}
        request_id = f" (requestId: {error['request_id']})" if error.get("request_id") else ""
        what = f"{error.get('type', 'error')}: {error.get('message', event)}"
        raise AirflowFailException(f"Cannot wait for the session: {what}{request_id}")


def _fail_if_disabled(session_id: str | None, status: str) -> None:
    if status == "disabled":
        raise AirflowFailException(
            f"Session {session_id!r} is disabled and will not become ready by itself: restart it "
            "(WhatsInfinityRestartSessionOperator) or create it again"
        )
