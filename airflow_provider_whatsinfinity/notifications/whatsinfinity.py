"""
A notifier that sends Airflow alerts to WhatsApp.

An alert is never lost and never sent twice:

- It always fits the API's 65000 characters: what the template inserts (the exception, the reason)
  is cut to fit, saying so, and a message still too long is cut as a last resort (:func:`clip_text`).
- Each alert to each recipient is a :class:`~airflow_provider_whatsinfinity.notifications.postbox.Letter`
  that ends delivered (alone or in a digest), or logged at ERROR level as not delivered, or as maybe
  delivered when its outcome was lost. A letter whose outcome is unknown is never sent again.
- Alerts that meet the same rate limit in one process wait together in the
  :class:`~airflow_provider_whatsinfinity.notifications.postbox.AlertPostbox` and
  go out as one digest per recipient when the rate window opens again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseNotifier

from airflow_provider_whatsinfinity._compat import redact
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, ValidationError
from airflow_provider_whatsinfinity.hook_lifecycle import WhatsInfinityHookMixin
from airflow_provider_whatsinfinity.notifications import postbox
from airflow_provider_whatsinfinity.notifications.postbox import Letter, adrive, drive, send_alone
from airflow_provider_whatsinfinity.spec import DEFAULT_CONN_ID, MAX_MESSAGE_LENGTH, text_length
from airflow_provider_whatsinfinity.task_helpers import recipients_of
from airflow_provider_whatsinfinity.validation import normalize_phone

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import jinja2
    from airflow.sdk import Context

    from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient, WhatsInfinityClient
    from airflow_provider_whatsinfinity.notifications.postbox import Steps

#: The default alert: which DAG, task, try and run, and the exception when there is one.
DEFAULT_MESSAGE = (
    "Airflow alert: DAG {{ dag.dag_id }}"
    "{% if ti is defined and ti %}, task {{ ti.task_id }} (try {{ ti.try_number }}){% endif %}"
    "{% if run_id is defined and run_id %}, run {{ run_id }}{% endif %}"
    "{% if exception is defined and exception %}\n{{ exception }}{% endif %}"
    "{% if reason is defined and reason %}\n{{ reason }}{% endif %}"
)

# An inserted text is never cut below this: below it, cutting the message itself reads better.
_SHORTEST_CUT = 200


def clip_text(text: str, limit: int, note: str = "truncated") -> str:
    """
    Return ``text`` cut to at most ``limit`` UTF-16 code units, ending with a note of its full length.

    :param text: The text.
    :param limit: The most UTF-16 code units the result may have, as the service counts them.
    :param note: What the note calls the cut: ``... [truncated: 70000 characters]``.
    """
    length = text_length(text)
    if length <= limit:
        return text
    tail = f"... [{note}: {length} characters]"
    room = limit - text_length(tail)
    if room <= 0:
        return tail[: max(limit, 0)]
    units = 0
    for index, character in enumerate(text):
        # A character above U+FFFF is two code units: it must fit whole.
        units += 2 if ord(character) > 0xFFFF else 1
        if units > room:
            return text[:index] + tail
    return text + tail  # not reached: the text is longer than the room


def describe_alert(context: Mapping[str, Any]) -> str:
    """
    Name an alert for the logs: its DAG, task and try, and run, as far as the context knows them.

    :param context: The callback's context (a deadline alert's is a plain dict of plain values).
    """
    dag, dag_run, ti = context.get("dag"), context.get("dag_run"), context.get("ti")
    dag_id = _field(dag, "dag_id") or _field(dag_run, "dag_id")
    run_id = context.get("run_id") or _field(dag_run, "run_id")
    parts = [f"DAG {dag_id}"] if dag_id else []
    if task_id := _field(ti, "task_id"):
        try_number = _field(ti, "try_number")
        parts.append(f"task {task_id}" + (f" (try {try_number})" if try_number else ""))
    if run_id:
        parts.append(f"run {run_id}")
    return ", ".join(parts) or "an Airflow alert without a DAG in its context"


def _field(thing: Any, name: str) -> Any:
    return thing.get(name) if isinstance(thing, Mapping) else getattr(thing, name, None)


# The notifier ------------------------------------------------------------------------------------


class WhatsInfinityNotifier(WhatsInfinityHookMixin, BaseNotifier):
    """
    Send a WhatsApp message from an Airflow callback or deadline alert.

    .. code-block:: python

        DAG(..., on_failure_callback=WhatsInfinityNotifier(to="919999999999"))
        task = BashOperator(
            ...,
            on_failure_callback=WhatsInfinityNotifier(
                to=["919999999999", "447700900123"],
                message="{{ ti.task_id }} failed in {{ dag.dag_id }}: {{ exception }}",
            ),
        )

    Every recipient is tried, even when an earlier one failed; the first error is raised at the end
    (Airflow 3.0's callback runner logs it instead of raising), and every alert not delivered is
    logged at ERROR level with its DAG, task, run and recipient. ``async_notify`` runs in the
    triggerer for deadline alerts, on Airflow 3.1+.

    Each alert gets a hook of its own (:attr:`hook` from ``notify``, :attr:`hook_async` from
    ``async_notify``), built from the connection id rendered for it and closed once it is sent.

    :param to: A phone number with country code, or a list of them. Templated.
    :param message: The message, templated with the callback's context (``dag``, ``ti``,
        ``run_id``, ``exception``, ...). The default names the DAG, task, try, run and exception.
        A message longer than the API's 65000 characters has what it inserts cut to fit (the
        exception, say), or else its end, with a note saying so.
    :param typing: Show a typing indicator briefly before the message.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :param max_rate_limit_wait: Most seconds an alert waits for the session's rate window before
        it is given up (and logged); default the connection's ``max_rate_limit_wait`` (120 s). A
        callback that waits holds its worker slot meanwhile.
    :param digest: Let alerts that wait for the same rate window in this process go out as one
        message per recipient (see
        :class:`~airflow_provider_whatsinfinity.notifications.postbox.AlertPostbox`); ``False`` sends
        each alert alone.
    :param hook_params: More arguments for :class:`WhatsInfinityHook`, such as ``timeout`` or
        ``max_attempts``; ``max_rate_limit_wait`` above overrides the one here.
    """

    template_fields: Sequence[str] = ("to", "message", "whatsinfinity_conn_id")

    def __init__(
        self,
        *,
        to: str | int | list[str | int],
        message: str = DEFAULT_MESSAGE,
        typing: bool = False,
        whatsinfinity_conn_id: str = DEFAULT_CONN_ID,
        max_rate_limit_wait: float | None = None,
        digest: bool = True,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_rate_limit_wait is not None and (
            isinstance(max_rate_limit_wait, bool)
            or not isinstance(max_rate_limit_wait, (int, float))
            or not 0 <= max_rate_limit_wait < math.inf
        ):
            raise ValidationError(
                f"max_rate_limit_wait must be a number of seconds, 0 or more, got {max_rate_limit_wait!r}"
            )
        self.to = to
        self.message = message
        self.typing = typing
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.max_rate_limit_wait = max_rate_limit_wait
        self.digest = digest
        self.hook_params = dict(hook_params or {})
        if max_rate_limit_wait is not None:
            self.hook_params["max_rate_limit_wait"] = max_rate_limit_wait
        self._templates = {name: getattr(self, name) for name in self.template_fields}

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """
        Render the templated fields for this alert, from the templates as written.

        Airflow renders in place; a notifier that lives on in one process (a DAG file imported
        once, the triggerer's deadline alerts) would otherwise send its first alert again and again.
        A message that renders too long is rendered again with the long texts it inserts cut to fit.
        A message template that fails (a name the context lacks) does not lose the alert: the default
        message goes out instead, saying why.

        :param context: The callback's context.
        :param jinja_env: The Jinja environment to render with.
        """
        if "exception" not in context:
            # Deployed Airflow puts the task's exception (None after a success) in every callback's
            # context; dag.test() on Airflow 3.0 to 3.2 leaves it out of task callbacks.
            context = cast("Context", {**context, "exception": None})
        for name, template in self._templates.items():
            setattr(self, name, template)
        try:
            super().render_template_fields(context, jinja_env)
        except Exception as error:
            if self._templates["message"] == DEFAULT_MESSAGE:
                raise  # the recipients or the connection id failed: nobody to send to
            problem = redact(f"{type(error).__name__}: {error}")
            self.log.error("The alert's message template failed (%s); sending the default message", problem)
            for name, template in self._templates.items():
                setattr(self, name, template)
            self.message = DEFAULT_MESSAGE
            super().render_template_fields(context, jinja_env)
            self.message = f"{self.message}\n(The alert's own message template failed: {problem})"
        if isinstance(self.message, str) and text_length(self.message) > MAX_MESSAGE_LENGTH:
            self.message = self._render_cut(context, jinja_env)

    def _render_cut(self, context: Context, jinja_env: jinja2.Environment | None) -> str:
        """Render the message again with the long texts of the context cut, just enough to fit."""
        rendered = redact(str(self.message))
        long_texts: dict[str, str] = {}
        for name, value in context.items():
            if not isinstance(value, (str, BaseException)):
                continue
            try:
                # Masked before it is cut: a cut through a secret would leave its head unmasked.
                text = redact(str(value))
            except Exception:  # an exception whose __str__ fails: the template fails on it too
                continue
            if text_length(text) > _SHORTEST_CUT:
                long_texts[name] = text
        if not long_texts:
            return rendered
        cap = _cut_to_save(
            [text_length(text) for text in long_texts.values()], text_length(rendered) - MAX_MESSAGE_LENGTH
        )
        cut = {name: clip_text(text, max(cap, _SHORTEST_CUT)) for name, text in long_texts.items()}
        try:
            env = jinja_env or self.get_template_env(dag=context.get("dag"))
            values: dict[str, Any] = {**context, **cut}
            again = self.render_template(self._templates["message"], cast("Context", values), env)
        except Exception:
            # A template that needs the exception itself (exception.args, say): the last resort applies.
            return rendered
        return str(again)

    def render_message(self) -> str:
        """Return the rendered message with every secret Airflow masks replaced by ``***``, cut to fit."""
        # The masker cleans logs only: an exception in the default message could carry a password.
        return clip_text(redact(self.message), MAX_MESSAGE_LENGTH, note="message truncated")

    def notify(self, context: Context) -> None:
        """Send the rendered message to every recipient."""
        letters = self._letters(context)
        try:
            client: WhatsInfinityClient | Exception
            try:
                client = self.hook.get_conn()  # built now, from this alert's connection id
            except Exception as error:
                client = error
            for steps in self._deliveries(letters, client):
                drive(steps, lambda step: self.hook.send_text(step.to, step.text, typing=step.typing))
        finally:
            self.close_hook()  # the next alert may render another connection id
            self._log_outcomes(letters)
        self._raise_first_error(letters)

    async def async_notify(self, context: Context) -> None:
        """Send the rendered message to every recipient, from the triggerer."""
        letters = self._letters(context)
        try:
            client: AsyncWhatsInfinityClient | Exception
            try:
                client = await self.hook_async.get_async_client()  # built now, as in notify
            except Exception as error:
                client = error
            for steps in self._deliveries(letters, client):
                await adrive(
                    steps, lambda step: self.hook_async.asend_text(step.to, step.text, typing=step.typing)
                )
        finally:
            await self.aclose_hook()
            self._log_outcomes(letters)
        self._raise_first_error(letters)

    def _letters(self, context: Context) -> list[Letter]:
        """Return this alert's letters, one per recipient; a malformed number is settled at once."""
        alert = describe_alert(context)
        try:
            recipients = recipients_of(self.to)[0]
        except Exception as error:
            self.log.error("WhatsApp alert for %s NOT sent: %s", alert, error)
            raise
        text = self.render_message()
        letters = []
        for recipient in recipients:
            letter = Letter(alert, recipient, text, self.typing)
            try:
                letter.digits = normalize_phone(recipient)
            except ValidationError as error:
                letter.outcome = error
            letters.append(letter)
        return letters

    def _deliveries(
        self, letters: list[Letter], client: WhatsInfinityClient | AsyncWhatsInfinityClient | Exception
    ) -> Iterator[Steps]:
        """Yield each letter's delivery, one after the other: through the postbox, or alone."""
        if isinstance(client, Exception):
            for letter in letters:
                letter.outcome = letter.outcome or client
            return
        budget = client.retry.max_rate_limit_wait
        if self.digest:
            # The postbox waits out 429s itself, with each alert's budget, so that alerts held by the
            # same window can leave together: the client gives a 429 back at once.
            client.retry = replace(client.retry, max_rate_limit_wait=0)
        window = (self.whatsinfinity_conn_id, client.base_url, client.session_id)
        for letter in letters:
            if letter.outcome is None:
                letter.budget = budget
                yield postbox.POSTBOX.deliver(letter, window) if self.digest else send_alone(letter)

    def _log_outcomes(self, letters: list[Letter]) -> None:
        """Log what became of each letter: one INFO line when delivered, one ERROR line otherwise."""
        for letter in letters:
            outcome = letter.outcome
            how = f" in a digest of {letter.carried_with} alerts" if letter.carried_with > 1 else ""
            if outcome is None:
                self.log.error(
                    "WhatsApp alert for %s NOT sent to %s: the notifier stopped before its turn",
                    letter.alert,
                    letter.to,
                )
            elif isinstance(outcome, OutcomeUnknownError):
                self.log.error(
                    "WhatsApp alert for %s to %s may or may not have gone out%s, so it is not sent again: %s",
                    letter.alert,
                    letter.to,
                    how,
                    outcome,
                )
            elif isinstance(outcome, Exception):
                self.log.error(
                    "WhatsApp alert for %s NOT sent to %s%s: %s", letter.alert, letter.to, how, outcome
                )
            else:
                self.log.info(
                    "WhatsApp alert for %s sent to %s%s (messageId %s)",
                    letter.alert,
                    outcome.to,
                    how,
                    outcome.message_id,
                )

    @staticmethod
    def _raise_first_error(letters: list[Letter]) -> None:
        errors = [letter.outcome for letter in letters if isinstance(letter.outcome, Exception)]
        if errors:
            raise errors[0]


def _cut_to_save(lengths: list[int], excess: int) -> int:
    """Return the longest length to cut texts of these lengths to, so that together they lose ``excess``."""
    low, high = 0, max(lengths)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(length - middle for length in lengths if length > middle) >= excess:
            low = middle
        else:
            high = middle - 1
    return low


#: The conventional lower-case name, as in other providers (``send_slack_notification``).
send_whatsinfinity_notification = WhatsInfinityNotifier
