"""The base of the WhatsInfinity operators: the connection, its hook, and errors as task outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_whatsinfinity.exceptions import WhatsInfinityError
from airflow_provider_whatsinfinity.hook_lifecycle import WhatsInfinityHookMixin
from airflow_provider_whatsinfinity.spec import DEFAULT_CONN_ID
from airflow_provider_whatsinfinity.task_helpers import raise_for_task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow.sdk import Context


class WhatsInfinityBaseOperator(WhatsInfinityHookMixin, BaseOperator):
    """
    Base of the WhatsInfinity operators: the connection and the hook built from it.

    Subclasses implement :meth:`run`; ``execute`` runs it and then closes the hook.

    :param whatsinfinity_conn_id: The WhatsInfinity connection to use.
    :param hook_params: More arguments for :class:`WhatsInfinityHook`, such as ``timeout``,
        ``max_rate_limit_wait``, ``max_attempts`` or ``retry``.
    """

    template_fields: Sequence[str] = ("whatsinfinity_conn_id",)

    def __init__(
        self,
        *,
        whatsinfinity_conn_id: str = DEFAULT_CONN_ID,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.hook_params = hook_params or {}

    def execute(self, context: Context) -> Any:
        """Run the operator's work, then close the hook's connection pool, whatever happened."""
        try:
            return self.run(context)
        finally:
            self.close_hook()

    def run(self, context: Context) -> Any:
        """Do the operator's work; subclasses implement this instead of ``execute``."""
        raise NotImplementedError

    def call(self, action: Callable[[], Any]) -> Any:
        """Run a hook call, failing the task at once on errors that retries cannot fix."""
        try:
            return action()
        except WhatsInfinityError as error:
            raise_for_task(error)
