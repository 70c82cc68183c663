"""A notifier that sends Airflow alerts to WhatsApp."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from airflow_provider_whatsinfinity._compat import redact
from airflow_provider_whatsinfinity.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_whatsinfinity.operators.whatsinfinity import recipients_of

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

        :param context: The callback's context.
        :param jinja_env: The Jinja environment to render with.
        """
        for name, template in self._templates.items():
            setattr(self, name, template)
        super().render_template_fields(context, jinja_env)

    def render_message(self) -> str:
        """Return the rendered message with every secret Airflow masks replaced by ``***``."""
        # The masker cleans logs only: an exception in the default message could carry a password.
        return redact(self.message)

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


#: The conventional lower-case name, as in other providers (``send_slack_notification``).
send_whatsinfinity_notification = WhatsInfinityNotifier
