"""A notifier that sends Airflow alerts to WhatsApp."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseNotifier

from airflow_provider_whatsinfinity._compat import redact
from airflow_provider_whatsinfinity.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_whatsinfinity.operators.whatsinfinity import recipients_of
from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length

if TYPE_CHECKING:
    from collections.abc import Sequence

    import jinja2
    from airflow.sdk import Context

    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
    from airflow_provider_whatsinfinity.models import SendResult

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


class WhatsInfinityNotifier(BaseNotifier):
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

    Every recipient is tried, even when an earlier one failed; the first error is raised at the end.

    :param to: A phone number with country code, or a list of them. Templated.
    :param message: The message, templated with the callback's context (``dag``, ``ti``,
        ``run_id``, ``exception``, ...). The default names the DAG, task, try, run and exception.
        A message longer than the API's 65000 characters has what it inserts cut to fit (the
        exception, say), or else its end, with a note saying so.
    :param typing: Show a typing indicator briefly before the message.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    """

    template_fields: Sequence[str] = ("to", "message", "whatsinfinity_conn_id")

    def __init__(
        self,
        *,
        to: str | int | list[str | int],
        message: str = DEFAULT_MESSAGE,
        typing: bool = False,
        whatsinfinity_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.message = message
        self.typing = typing
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self._templates = {name: getattr(self, name) for name in self.template_fields}

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """
        Render the templated fields for this alert, from the templates as written.

        Airflow renders in place; a notifier that lives on in one process (a DAG file imported
        once, the triggerer's deadline alerts) would otherwise send its first alert again and again.
        A message that renders too long is rendered again with the long texts it inserts cut to fit.

        :param context: The callback's context.
        :param jinja_env: The Jinja environment to render with.
        """
        for name, template in self._templates.items():
            setattr(self, name, template)
        super().render_template_fields(context, jinja_env)
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

    def hook(self) -> WhatsInfinityHook:
        """Return a hook on the connection this alert was rendered with."""
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        return WhatsInfinityHook(whatsinfinity_conn_id=self.whatsinfinity_conn_id)

    def notify(self, context: Context) -> None:
        """Send the rendered message to every recipient."""
        hook, message = self.hook(), self.render_message()
        outcomes: list[tuple[str | int, SendResult | Exception]] = []
        try:
            for recipient in recipients_of(self.to)[0]:
                try:
                    outcomes.append((recipient, hook.send_text(recipient, message, typing=self.typing)))
                except Exception as error:
                    outcomes.append((recipient, error))
        finally:
            hook.close()
        self._report(outcomes)

    async def async_notify(self, context: Context) -> None:
        """Send the rendered message to every recipient, from the triggerer."""
        hook, message = self.hook(), self.render_message()
        outcomes: list[tuple[str | int, SendResult | Exception]] = []
        try:
            for recipient in recipients_of(self.to)[0]:
                try:
                    result = await hook.asend_text(recipient, message, typing=self.typing)
                    outcomes.append((recipient, result))
                except Exception as error:
                    outcomes.append((recipient, error))
        finally:
            await hook.aclose()
        self._report(outcomes)

    def _report(self, outcomes: list[tuple[str | int, SendResult | Exception]]) -> None:
        """Log each recipient's outcome, then raise the first error, once everyone was tried."""
        errors = []
        for recipient, outcome in outcomes:
            if isinstance(outcome, Exception):
                self.log.error("WhatsApp alert to %s failed: %s", recipient, outcome)
                errors.append(outcome)
            else:
                self.log.info("WhatsApp alert sent to %s (messageId %s)", outcome.to, outcome.message_id)
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
