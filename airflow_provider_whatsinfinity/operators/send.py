"""
The operators that send WhatsApp messages: text, and media (images, videos, audio, documents).

Delivery semantics, shared by both:

- A send that the server refused for good (invalid input, wrong key, unknown session, a number not on
  WhatsApp, a disabled session) or whose outcome is unknown fails the task at once, with no Airflow
  retries (:class:`~airflow.sdk.exceptions.AirflowFailException`): retrying cannot help, and after an
  unknown outcome it could deliver the message twice.
- Transient errors (rate limited, queue full, server errors, service unreachable) fail the task
  normally, so that its ``retries`` apply; on Airflow 3.3+,
  :class:`~airflow_provider_whatsinfinity.retry_policy.WhatsInfinityRetryPolicy` times them better.
- A send to a list of recipients goes through them in order, recorded by number in the task's
  :class:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord` (``task_state_store`` on Airflow
  3.3+, an Airflow Variable per task instance before), so that a retry skips whoever was served and
  never sends again to whoever may have been.
- With ``deferrable=True``, a rate-limit wait longer than ``defer_threshold`` seconds is not slept in
  the worker: the task defers to the triggerer until the session's rate window resets, and resumes the
  list from the same record (a rate-limited send was refused: certainly not sent).

The hook and the client are imported only when a task runs, to keep DAG parsing fast.
"""

from __future__ import annotations

import functools
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_whatsinfinity._compat import AirflowException, AirflowFailException, conf
from airflow_provider_whatsinfinity.exceptions import (
    OutcomeUnknownError,
    RateLimitedError,
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.media_urls import SIGNED_URL_EXPIRY, public_url_for
from airflow_provider_whatsinfinity.operators.base import WhatsInfinityBaseOperator
from airflow_provider_whatsinfinity.task_helpers import as_bool, raise_for_task, recipients_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import timedelta

    from airflow.sdk import Context

    from airflow_provider_whatsinfinity.client import SendCallbacks
    from airflow_provider_whatsinfinity.delivery import DeliveryRecord, PlannedSend
    from airflow_provider_whatsinfinity.models import SendResult

    #: Sends one prepared message: ``(digits, callbacks) -> SendResult``.
    Sender = Callable[[str, SendCallbacks], SendResult]


class _Unsent:
    """
    The recipients of one try that were not sent to, and why; the task fails on them at the end.

    :param total: How many sends the list holds.
    """

    # Not a dataclass: building one costs about half a millisecond at import, paid by every DAG file.
    def __init__(self, total: int) -> None:
        self.total = total
        #: One line per recipient not sent to, naming it and saying why.
        self.problems: list[str] = []
        #: The errors behind them, the first one the task's failure's cause.
        self.errors: list[WhatsInfinityError] = []
        #: The unknown outcome after which nobody else was sent to, if one was.
        self.stopped: OutcomeUnknownError | None = None
        #: How many were not attempted after :attr:`stopped`: certainly not sent.
        self.not_attempted = 0

    def add(self, problem: str, error: WhatsInfinityError | None = None) -> None:
        """Note a recipient not sent to, and the error why, if there was one."""
        self.problems.append(problem)
        if error is not None:
            self.errors.append(error)

    def fail_task(self, log_error: Callable[..., object]) -> None:
        """
        Log every recipient not sent to, if any, then fail the task: retryable only if a retry can help.

        :param log_error: Logs a line at ERROR level, such as the operator's ``log.error``.
        """
        if not self.problems:
            return
        for problem in self.problems:
            log_error("%s", problem)
        summary = f"{len(self.problems)} of {self.total} recipients not sent: " + "; ".join(self.problems)
        if self.stopped is not None and self.not_attempted:
            # Those not attempted were certainly not sent: Airflow's retries may send them (and never
            # the one whose outcome is unknown).
            raise AirflowException(
                f"{summary}. Stopped after an unknown outcome; a retry sends to those not attempted"
            ) from self.stopped
        raise AirflowFailException(summary) from (self.errors[0] if self.errors else None)


#: Rate-limit waits up to this many seconds are slept in the worker even by a deferrable send.
DEFAULT_DEFER_THRESHOLD = 30.0
#: Deferrals in a row after which nothing was sent: the session stays rate limited, and the task fails
#: (transient: its ``retries`` apply) rather than defer for ever.
MAX_DEFERRALS_WITHOUT_PROGRESS = 5
#: The longest deferral, in seconds: a longer wait asked by the service fails the task instead.
MAX_DEFER_SECONDS = 3600.0


class _RateWindow(Exception):
    """A send was refused for the session's rate window, and the task defers rather than wait."""

    def __init__(self, error: RateLimitedError) -> None:
        super().__init__(str(error))
        self.error = error


class _SendOperator(WhatsInfinityBaseOperator):
    """What the text and media send operators share: recipients, the state store, the XCom."""

    def __init__(
        self,
        *,
        to: Any,
        dry_run: bool | str = False,
        deferrable: bool | str | None = None,
        defer_threshold: float = DEFAULT_DEFER_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        # Not "self.dry_run": BaseOperator.dry_run() is a method that `airflow tasks test --dry-run` calls.
        self.is_dry_run = dry_run
        self.deferrable = deferrable
        #: Set by :meth:`execute_complete`: what the deferral carried over (the list, idle deferrals).
        self._resumed: dict[str, Any] | None = None
        if isinstance(defer_threshold, bool) or not isinstance(defer_threshold, (int, float)):
            raise TypeError(f"defer_threshold must be a number of seconds, not {defer_threshold!r}")
        if not 0 <= defer_threshold < float("inf"):
            raise ValueError(f"defer_threshold must be 0 or more seconds, not {defer_threshold!r}")
        self.defer_threshold = float(defer_threshold)

    def defers(self) -> bool:
        """
        Whether this send defers to the triggerer for long rate-limit waits.

        ``deferrable`` when given; else the connection's ``deferrable`` extra; else Airflow's
        ``[operators] default_deferrable`` (``False`` unless set).
        """
        if self.deferrable is not None:
            return as_bool(self.deferrable, "deferrable")
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        extras = WhatsInfinityHook.get_connection(self.whatsinfinity_conn_id).extra_dejson
        if extras.get("deferrable") not in (None, ""):
            return as_bool(extras["deferrable"], "the connection's deferrable extra")
        return conf.getboolean("operators", "default_deferrable", fallback=False)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """
        Resume the list after a deferral for the rate window: everyone already sent is skipped.

        :param context: The task's context.
        :param event: The trigger's event: ``{"state": {"recipients", "many", "idle"}}``, the list as
            it was resolved before the first deferral (the same people, whatever ``to`` renders to
            now) and the deferrals in a row after which nothing was sent.
        """
        state = event.get("state") if isinstance(event, dict) else None
        self._resumed = state if isinstance(state, dict) else None
        try:
            return self.execute(context)
        finally:
            self._resumed = None

    #: What is sent, for log lines.
    kind = "message"

    def prepare(self, dry_run: bool) -> Sender:
        """
        Resolve everything a send needs (flags, URLs, the connection) and return the sender.

        Runs before any recipient is marked pending: whatever fails here means nothing was sent.

        :param dry_run: Whether the sends only validate.
        """
        raise NotImplementedError

    def run(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        """
        Send to every recipient that no earlier try of this task reached, and return the results.

        Everything that can fail locally (the numbers, flags, media URL, connection, the request's
        encoding) is resolved first: what fails there sent nothing. Then each send goes through
        :meth:`_deliver`, which asks the task's
        :class:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord` what earlier tries did with
        it. Recipients the server refuses one by one (not on WhatsApp, an unknown outcome) do not stop
        the others; the task fails at the end. Errors that concern the whole session or the service
        stop the list at once. After a fully successful run the record is stamped complete, so that a
        retry sends nobody again and clearing the task sends again.
        """
        from airflow_provider_whatsinfinity.delivery import DeliveryRecord, delivery_store, plan_sends

        resumed = self._resumed or {}
        if resumed.get("recipients") is not None:
            recipients, many = list(resumed["recipients"]), bool(resumed["many"])
        else:
            recipients, many = recipients_of(self.to)
        if not recipients:
            raise AirflowFailException("'to' is empty: give at least one phone number")
        sends, merged = self.call(lambda: plan_sends(recipients))
        for note in merged:
            self.log.info("Merged recipients: %s", note)
        dry_run = as_bool(self.is_dry_run, "dry_run")
        # A dry run keeps no record: resumed, it would validate the whole list again, for ever.
        defers = not dry_run and self.call(self.defers)
        if defers and "max_rate_limit_wait" not in self.hook_params:
            # Short waits are slept here; a longer one is a deferral (see _deliver).
            self.hook_params = {**self.hook_params, "max_rate_limit_wait": self.defer_threshold}
        send = self.call(lambda: self.prepare(dry_run))  # a connection that cannot work: nothing sent
        ti = context.get("ti")
        store = None if dry_run else delivery_store(context, resumed=bool(resumed))
        record = DeliveryRecord(store, getattr(ti, "max_tries", None))
        if resumed:
            # Fail closed: a record that reads back with fewer sends than it held at the deferral
            # was not read (a secrets backend down, a Variable deleted), and would send again.
            held = sum(1 for planned in sends if record.state(planned) == "sent")
            if held < int(resumed.get("sent", 0)):
                raise AirflowFailException(
                    f"The delivery record holds {held} sends after the deferral, {resumed['sent']} before "
                    "it: it could not be read back, so nothing more is sent (nobody gets a message twice). "
                    "Check the task's state store or its Variable, then clear the task"
                )

        results: list[dict[str, Any]] = [{} for _ in recipients]
        unsent = _Unsent(len(sends))
        sent_now = False  # whether this execution sent anyone (a deferral after none is idle)
        for number, planned in enumerate(sends, start=1):
            where = f"recipient {number} of {len(sends)} ({planned.digits})"
            if unsent.stopped is not None:
                # Answers are being lost (a proxy, an outage): sending on would turn everyone left
                # into "unknown". Those not yet sent certainly were not.
                if record.state(planned) != "sent":
                    unsent.add(f"{where}: not attempted")
                    unsent.not_attempted += 1
                continue
            earlier = record.state(planned)
            try:
                result = self._deliver(planned, where, send, record, unsent, defers)
            except _RateWindow as window:
                idle = 0 if sent_now else int(resumed.get("idle", 0)) + 1
                held = sum(1 for each in sends if record.state(each) == "sent")
                self._defer_for(window.error, number - 1, len(sends), recipients, many, idle, held)
            sent_now = sent_now or (earlier != "sent" and record.state(planned) == "sent")
            if result is not None:
                for position in planned.positions:
                    results[position] = result
        unsent.fail_task(self.log.error)
        record.complete()  # a retry of this run sends nobody again; a clear of the task sends again
        if record.discard_on_success:  # a Variable (Airflow < 3.3): deleted once the task has succeeded
            self.on_success_callback = [*(self.on_success_callback or ()), record.discard]
        return results if many else results[0]

    def _defer_for(
        self,
        error: RateLimitedError,
        done: int,
        total: int,
        recipients: list[str],
        many: bool,
        idle: int,
        sent: int = 0,
    ) -> NoReturn:
        """
        Defer the task until the session's rate window resets; it resumes in :meth:`execute_complete`.

        The refused send was forgotten by the record (a 429 certainly did not go out). The task fails
        instead, with the rate-limit error (transient: ``retries`` apply), when the service asks for
        more than :data:`MAX_DEFER_SECONDS` or after :data:`MAX_DEFERRALS_WITHOUT_PROGRESS` deferrals
        in a row that sent nobody.

        :param error: The refusal, whose ``retry_after`` says when the window resets.
        :param done: How many planned sends come before the refused one.
        :param total: How many the list holds.
        :param recipients: The list as resolved, carried to the resumed execution.
        :param many: Whether ``to`` was a list.
        :param idle: Deferrals in a row, this one included, after which nothing was sent.
        :param sent: How many of the list the record holds as sent: the resumed run checks it reads as many.
        """
        from datetime import datetime, timedelta, timezone

        from airflow_provider_whatsinfinity.triggers.rate_window import WhatsInfinityRateWindowTrigger

        wait = max(float(error.retry_after or self.defer_threshold or 1.0), 1.0)
        if wait > MAX_DEFER_SECONDS:
            self.log.error("Stopped at recipient %d of %d: %s", done + 1, total, error)
            raise_for_task(error)
        if idle > MAX_DEFERRALS_WITHOUT_PROGRESS:
            self.log.error(
                "Stopped at recipient %d of %d: still rate limited after %d deferrals that sent nobody: %s",
                done + 1,
                total,
                idle - 1,
                error,
            )
            raise_for_task(error)
        self.log.info(
            "Rate limited at recipient %d of %d (requestId %s): deferring %.0f s, until the session's "
            "rate window resets; the list resumes there, and nobody already sent is sent again",
            done + 1,
            total,
            error.request_id,
            wait,
        )
        moment = datetime.now(timezone.utc) + timedelta(seconds=wait)
        state = {"recipients": recipients, "many": many, "idle": idle, "sent": sent}
        self.defer(
            trigger=WhatsInfinityRateWindowTrigger(moment=moment.isoformat(), state=state),
            method_name="execute_complete",
        )

    def _deliver(
        self,
        planned: PlannedSend,
        where: str,
        send: Sender,
        record: DeliveryRecord,
        unsent: _Unsent,
        defers: bool = False,
    ) -> dict[str, Any] | None:
        """
        Send one planned send unless an earlier try did or may have; return its result, if it has one.

        It is marked ``pending`` in the record only as its request is about to leave, and ``sent``
        after the answer: a try that dies mid-send (a timeout, a lost worker) leaves a mark, and a
        later try never sends to a ``pending`` or ``unknown`` recipient again but reports it. A
        refusal before the request was acted on clears the mark, so that a later try may send it.
        """
        from airflow_provider_whatsinfinity.client import SendCallbacks
        from airflow_provider_whatsinfinity.exceptions import NotOnWhatsAppError, ValidationError

        earlier = record.state(planned)
        if earlier == "sent":
            self.log.info("Skipping %s: already sent (by an earlier try, or before a deferral)", where)
            return record.result(planned) or {}
        if earlier is not None:
            unsent.add(f"{where}: an earlier try may have sent it (outcome unknown); not sent again")
            return None
        callbacks = SendCallbacks(
            before_send=functools.partial(record.mark_pending, planned),
            on_refused=functools.partial(record.forget, planned),  # a wait after a certain refusal
        )
        try:
            result = send(planned.digits, callbacks).to_dict()
        except OutcomeUnknownError as error:
            record.mark_unknown(planned)
            unsent.add(f"{where}: outcome unknown, not sent again: {error}", error)
            unsent.stopped = error
            return None
        except (NotOnWhatsAppError, ValidationError) as error:
            record.forget(planned)  # refused, or never left: a later try may send it
            unsent.add(f"{where}: {type(error).__name__}: {error}", error)
            return None
        except WhatsInfinityError as error:
            record.forget(planned)  # refused before it was acted on: a retry may send it
            if defers and isinstance(error, RateLimitedError):
                raise _RateWindow(error) from error
            self.log.error("Stopped at %s: %s", where, error)
            raise_for_task(error)
        record.mark_sent(planned, result)
        self.log.info(
            "%s %s to %s (messageId %s, requestId %s)",
            "Validated" if result["dry_run"] else "Queued" if result["queued"] else "Delivered",
            self.kind,
            result["to"],
            result["message_id"],
            result["request_id"],
        )
        return result


class WhatsInfinitySendTextOperator(_SendOperator):
    """
    Send a WhatsApp text message to one recipient or a list of them.

    .. code-block:: python

        WhatsInfinitySendTextOperator(
            task_id="notify",
            to=["+91 99999 99999", "447700900123"],
            message="Load of {{ ds }} finished: {{ ti.xcom_pull('count') }} rows",
        )

    :param to: A phone number with country code (``+``, spaces and dashes are fine), a list of them,
        or an XComArg. Templated.
    :param message: The text, at most 65000 characters. Templated.
    :param typing: Show a typing indicator briefly before the message. Templated.
    :param dry_run: Only validate the message; nothing is sent. Templated.
    :param deferrable: Defer to the triggerer, freeing the worker, when the session's rate window
        makes the next send wait longer than ``defer_threshold``; the list resumes where it stopped.
        ``None`` takes the connection's ``deferrable`` extra, else ``[operators] default_deferrable``.
    :param defer_threshold: Rate-limit waits up to this many seconds are slept in the worker
        (deferring costs a round trip through the triggerer); default 30.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The :class:`~airflow_provider_whatsinfinity.models.SendResult` as a dict, or a list of
        them when ``to`` is a list.
    """

    template_fields: Sequence[str] = (
        "to",
        "message",
        "typing",
        "is_dry_run",
        "deferrable",
        "whatsinfinity_conn_id",
    )
    kind = "text"
    template_fields_renderers = {"message": "md"}
    ui_color = "#25d366"

    def __init__(
        self, *, to: Any, message: str, typing: bool | str = False, dry_run: bool | str = False, **kwargs: Any
    ) -> None:
        super().__init__(to=to, dry_run=dry_run, **kwargs)
        self.message = message
        self.typing = typing

    def prepare(self, dry_run: bool) -> Sender:
        """
        Resolve the flags and the connection; return the sender of this text.

        :param dry_run: Whether the sends only validate.
        """
        typing = as_bool(self.typing, "typing")
        hook = self.hook
        hook.get_conn()  # the connection is looked up now, before anyone is marked pending

        def send(to: str, callbacks: SendCallbacks) -> SendResult:
            return hook.send_text(to, self.message, typing=typing, dry_run=dry_run, callbacks=callbacks)

        return send


class WhatsInfinitySendMediaOperator(_SendOperator):
    """
    Send an image, video, audio file or document to one recipient or a list of them.

    ``url`` is a public http(s) URL, or an object-storage location (an ``ObjectStoragePath`` or a
    URL such as ``s3://bucket/report.pdf``) whose filesystem can sign URLs: the operator then sends a
    signed URL valid for ``signed_url_expiry``.

    :param to: A phone number with country code, a list of them, or an XComArg. Templated.
    :param url: Where the file is. Templated.
    :param media_type: ``media`` to detect the kind from the URL's extension, or ``image``,
        ``video``, ``audio`` or ``document``. Templated.
    :param caption: Caption for images, videos and documents. Templated.
    :param file_name: File name shown for a document, such as ``report.pdf``. Templated.
    :param dry_run: Only validate the message; nothing is sent. Templated.
    :param signed_url_expiry: How long a signed object-storage URL stays valid.
    :param deferrable: Defer to the triggerer, freeing the worker, when the session's rate window
        makes the next send wait longer than ``defer_threshold``; the list resumes where it stopped.
        ``None`` takes the connection's ``deferrable`` extra, else ``[operators] default_deferrable``.
    :param defer_threshold: Rate-limit waits up to this many seconds are slept in the worker; default 30.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The :class:`~airflow_provider_whatsinfinity.models.SendResult` as a dict, or a list of
        them when ``to`` is a list.
    """

    template_fields: Sequence[str] = (
        "to",
        "url",
        "media_type",
        "caption",
        "file_name",
        "is_dry_run",
        "deferrable",
        "whatsinfinity_conn_id",
    )
    ui_color = "#25d366"
    kind = "media"

    def __init__(
        self,
        *,
        to: Any,
        url: Any,
        media_type: str = "media",
        caption: str | None = None,
        file_name: str | None = None,
        dry_run: bool | str = False,
        signed_url_expiry: timedelta = SIGNED_URL_EXPIRY,
        **kwargs: Any,
    ) -> None:
        super().__init__(to=to, dry_run=dry_run, **kwargs)
        self.url = url
        self.media_type = media_type
        self.caption = caption
        self.file_name = file_name
        self.signed_url_expiry = signed_url_expiry

    @cached_property
    def public_url(self) -> str:
        """The http(s) URL sent: ``url`` itself, or a signed URL for an object-storage location."""
        return public_url_for(self.url, self.signed_url_expiry)

    def prepare(self, dry_run: bool) -> Sender:
        """
        Resolve (and sign) the URL and the connection; return the sender of this media.

        :param dry_run: Whether the sends only validate.
        """
        url = self.public_url
        hook = self.hook
        hook.get_conn()  # the connection is looked up now, before anyone is marked pending

        def send(to: str, callbacks: SendCallbacks) -> SendResult:
            return hook.send_media(
                to,
                url,
                media_type=self.media_type,
                caption=self.caption or None,
                file_name=self.file_name or None,
                dry_run=dry_run,
                callbacks=callbacks,
            )

        return send
