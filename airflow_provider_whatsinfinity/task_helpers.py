"""
What operators, sensors and notifiers share: reading templated arguments, and errors as task outcomes.

Kept apart from the operators so that a notifier (imported by every DAG that uses it as a callback)
does not import them.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from airflow_provider_whatsinfinity._compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from airflow_provider_whatsinfinity.exceptions import WhatsInfinityError

T = TypeVar("T")


def as_bool(value: Any, name: str) -> bool:
    """
    Return a templated flag as a bool: a rendered template is a string such as ``"True"``.

    :param value: The flag, a bool or its text.
    :param name: The argument's name, for the error message.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise AirflowFailException(f"{name} must be true or false, got {value!r}")


def recipients_of(to: Any) -> tuple[list[str | int], bool]:
    """
    Return the recipients of a send, and whether ``to`` was a list.

    :param to: One number, or a list (or tuple) of numbers; a comma-separated string works too, and so
        does a list rendered to text by a template (``"['919999999999', '447700900123']"``) when the
        DAG does not render native objects.
    """
    to = list_from_text(to, "'to'")
    if isinstance(to, Sequence) and not isinstance(to, str):  # lists, tuples, XCom sequences
        return list(to), True
    if isinstance(to, str) and "," in to:
        return [part.strip() for part in to.split(",") if part.strip()], True
    return [to], False


def list_from_text(value: Any, name: str) -> Any:
    """
    Read back a list that a template rendered to text (``"['a', 'b']"``); anything else as it is.

    A DAG that does not render native objects turns a templated list into its text.

    :param value: The rendered value.
    :param name: What it is, for the error when it looks like a list but is not one.
    """
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise AirflowFailException(f"{name} looks like a list but is not one: {value[:100]!r}") from None
    return value


def raise_for_task(error: WhatsInfinityError) -> NoReturn:
    """
    Raise what a task should for an error.

    That is the error itself when a retry may help, else a failure that skips Airflow's retries.

    :param error: The error a call raised.
    """
    if error.transient:
        raise error
    raise AirflowFailException(f"{type(error).__name__}: {error}") from error


def run_in_task(coroutine: Coroutine[Any, Any, T]) -> T:
    """
    Run a coroutine to its end in a new event loop of the standard library's, from a task's thread.

    Not ``asyncio.run``: that takes the event loop policy's loop, uvloop where Airflow set it (3.0),
    and uvloop swallows an exception raised by a signal handler, which is how ``execution_timeout``
    stops a task. In a selector loop the timeout is raised out of the loop; the coroutine's tasks
    are then cancelled (an ``await`` on a request that may have left leaves its mark ``pending``), and
    the loop is closed.

    :param coroutine: The coroutine.
    """
    import asyncio

    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
