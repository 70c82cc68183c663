"""
One hook lifecycle for the operators, the sensor and the notifier: built on first use, closed when done.

A hook holds an HTTP connection pool. It is built only when a task runs (never while a DAG file is
parsed, and after templates are rendered, so that a templated connection id is the rendered one), and
closed when the task, the sensor's wait or the alert is over, failed or not. The next use builds a new
hook: a notifier that sends many alerts reads each one's connection afresh.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook


class WhatsInfinityHookMixin:
    """
    The hook on ``whatsinfinity_conn_id``, built with ``hook_params``: ``hook`` and ``hook_async``.

    A class that mixes it in sets both attributes in its own ``__init__``, whose signature names them:
    Airflow reads an operator's arguments from the ``__init__`` of its own classes (for
    ``default_args``, ``partial`` and ``expand``), not from a mixin's. It calls :meth:`close_hook` (or
    :meth:`aclose_hook`) when its work is over.

    :ivar whatsinfinity_conn_id: The WhatsInfinity connection to use.
    :ivar hook_params: More arguments for :class:`WhatsInfinityHook`, such as ``timeout``,
        ``max_rate_limit_wait``, ``max_attempts`` or ``retry``.
    """

    whatsinfinity_conn_id: str
    hook_params: dict[str, Any]

    def _new_hook(self) -> WhatsInfinityHook:
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        return WhatsInfinityHook(whatsinfinity_conn_id=self.whatsinfinity_conn_id, **self.hook_params)

    @cached_property
    def hook(self) -> WhatsInfinityHook:
        """The hook for blocking calls, built on first use and kept until :meth:`close_hook`."""
        return self._new_hook()

    @cached_property
    def hook_async(self) -> WhatsInfinityHook:
        """The hook for coroutines (``async_notify``), built on first use, kept until :meth:`aclose_hook`."""
        return self._new_hook()

    def close_hook(self) -> None:
        """Close :attr:`hook`'s connection pool, if it was built, and forget it: the next use builds anew."""
        hook = self.__dict__.pop("hook", None)
        if hook is not None:
            hook.close()

    async def aclose_hook(self) -> None:
        """Close :attr:`hook_async`'s connection pool, if it was built, and forget it."""
        hook = self.__dict__.pop("hook_async", None)
        if hook is not None:
            await hook.aclose()
