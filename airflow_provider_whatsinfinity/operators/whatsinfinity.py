"""
Operators that send WhatsApp messages and manage WhatsInfinity sessions.

Delivery semantics, shared by the send operators:

- A send that the server refused for good (invalid input, wrong key, unknown session, a number not on
  WhatsApp, a disabled session) or whose outcome is unknown fails the task at once, with no Airflow
  retries (:class:`~airflow.sdk.exceptions.AirflowFailException`): retrying cannot help, and after an
  unknown outcome it could deliver the message twice.
- Transient errors (rate limited, queue full, server errors, service unreachable) fail the task
  normally, so that its ``retries`` apply; on Airflow 3.3+,
  :class:`~airflow_provider_whatsinfinity.retry_policy.WhatsInfinityRetryPolicy` times them better.
- A send to a list of recipients goes through them in order, recorded by number in the task's
  :class:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord` (``task_state_store``, Airflow
  3.3+), so that a retry skips whoever was served and never sends again to whoever may have been.

The hook and the client are imported only when a task runs, to keep DAG parsing fast.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_whatsinfinity._compat import AirflowException, AirflowFailException
from airflow_provider_whatsinfinity.exceptions import OutcomeUnknownError, WhatsInfinityError
from airflow_provider_whatsinfinity.get_provider_info import DEFAULT_CONN_ID

# Defined in modules of their own (the notifier needs the helpers, not the operators); still importable
# from here, as the README and existing DAGs do.
from airflow_provider_whatsinfinity.media_urls import OBJECT_STORAGE_SCHEMES as OBJECT_STORAGE_SCHEMES
from airflow_provider_whatsinfinity.media_urls import SIGNED_URL_EXPIRY, public_url_for
from airflow_provider_whatsinfinity.task_helpers import as_bool, raise_for_task, recipients_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import timedelta

    from airflow.sdk import Context

    from airflow_provider_whatsinfinity.client import SendCallbacks
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
    from airflow_provider_whatsinfinity.models import SendResult

    #: Sends one prepared message: ``(digits, callbacks) -> SendResult``.
    Sender = Callable[[str, SendCallbacks], SendResult]

#: The ``task_state_store`` key written by versions up to 0.1 (read once after an upgrade); the
#: record now lives under :attr:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord.KEY`.
ACCEPTED_KEY = "whatsinfinity_accepted"
#: Longest wait, in seconds, before checking whether a rotate-key whose answer was lost took effect.
ROTATION_SETTLE_MAX = 30.0


class WhatsInfinityBaseOperator(BaseOperator):
    """
    Base of the WhatsInfinity operators: the connection and the hook built from it.

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

    @cached_property
    def hook(self) -> WhatsInfinityHook:
        """The hook on this operator's connection."""
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        return WhatsInfinityHook(whatsinfinity_conn_id=self.whatsinfinity_conn_id, **self.hook_params)

    def execute(self, context: Context) -> Any:
        """Run the operator's work, then close the hook's connection pool, whatever happened."""
        try:
            return self.run(context)
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
                del self.__dict__["hook"]

    def run(self, context: Context) -> Any:
        """Do the operator's work; subclasses implement this instead of ``execute``."""
        raise NotImplementedError

    def call(self, action: Callable[[], Any]) -> Any:
        """Run a hook call, failing the task at once on errors that retries cannot fix."""
        try:
            return action()
        except WhatsInfinityError as error:
            raise_for_task(error)


class _SendOperator(WhatsInfinityBaseOperator):
    """What the text and media send operators share: recipients, the state store, the XCom."""

    def __init__(self, *, to: Any, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to = to
        # Not "self.dry_run": BaseOperator.dry_run() is a method that `airflow tasks test --dry-run` calls.
        self.is_dry_run = dry_run

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
        encoding) is resolved first. Each send is marked ``pending`` in the task's
        :class:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord` only as its request is about to
        leave, and ``sent`` after the answer, so that a try that died mid-send (a timeout, a lost worker)
        leaves a mark: a later try never sends to a ``pending`` or ``unknown`` recipient again, and
        reports it instead. Recipients the server refuses one by one (not on WhatsApp, an unknown
        outcome) do not stop the others; the task fails at the end, with no retries. Errors that
        concern the whole session or the service stop the list at once. After a fully successful run
        the record is cleared, so that clearing the task sends again.
        """
        from airflow_provider_whatsinfinity.client import SendCallbacks
        from airflow_provider_whatsinfinity.delivery import DeliveryRecord, plan_sends
        from airflow_provider_whatsinfinity.exceptions import NotOnWhatsAppError, ValidationError

        recipients, many = recipients_of(self.to)
        if not recipients:
            raise AirflowFailException("'to' is empty: give at least one phone number")
        try:
            sends, merged = plan_sends(recipients)
        except WhatsInfinityError as error:
            raise_for_task(error)
        for note in merged:
            self.log.info("Merged recipients: %s", note)
        dry_run = as_bool(self.is_dry_run, "dry_run")
        try:
            send = self.prepare(dry_run)
        except WhatsInfinityError as error:  # a connection that cannot work: nothing was sent
            raise_for_task(error)
        ti = context.get("ti")
        record = DeliveryRecord(
            None if dry_run else context.get("task_state_store"), getattr(ti, "max_tries", None)
        )

        results: list[dict[str, Any]] = [{} for _ in recipients]
        problems: list[str] = []
        errors: list[WhatsInfinityError] = []
        stopped: OutcomeUnknownError | None = None
        for number, planned in enumerate(sends, start=1):
            if stopped is not None:
                if record.state(planned) != "sent":
                    problems.append(f"recipient {number} of {len(sends)} ({planned.digits}): not attempted")
                continue
            where = f"recipient {number} of {len(sends)} ({planned.digits})"
            earlier = record.state(planned)
            if earlier == "sent":
                self.log.info("Skipping %s: an earlier try sent it", where)
                result = record.result(planned) or {}
            elif earlier is not None:
                problems.append(f"{where}: an earlier try may have sent it (outcome unknown); not sent again")
                continue
            else:
                callbacks = SendCallbacks(
                    before_send=functools.partial(record.mark_pending, planned),
                    on_refused=functools.partial(record.forget, planned),  # a wait after a certain refusal
                )
                try:
                    result = send(planned.digits, callbacks).to_dict()
                except OutcomeUnknownError as error:
                    record.mark_unknown(planned)
                    problems.append(f"{where}: outcome unknown, not sent again: {error}")
                    errors.append(error)
                    # The service's answers are being lost (a proxy, an outage): sending on would turn
                    # everyone left into "unknown". Stop; they were certainly not sent.
                    stopped = error
                    continue
                except (NotOnWhatsAppError, ValidationError) as error:
                    record.forget(planned)  # refused, or never left: a later try may send it
                    problems.append(f"{where}: {type(error).__name__}: {error}")
                    errors.append(error)
                    continue
                except WhatsInfinityError as error:
                    record.forget(planned)  # refused before it was acted on: a retry may send it
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
            for position in planned.positions:
                results[position] = result
        if problems:
            for problem in problems:
                self.log.error("%s", problem)
            summary = f"{len(problems)} of {len(sends)} recipients not sent: " + "; ".join(problems)
            if stopped is not None and any(p.endswith(": not attempted") for p in problems):
                # Those not attempted were certainly not sent: Airflow's retries may send them (and
                # never the one whose outcome is unknown).
                raise AirflowException(
                    f"{summary}. Stopped after an unknown outcome; a retry sends to those not attempted"
                ) from stopped
            raise AirflowFailException(summary) from (errors[0] if errors else None)
        record.complete()  # a retry of this run sends nobody again; a clear of the task sends again
        return results if many else results[0]


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
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The :class:`~airflow_provider_whatsinfinity.models.SendResult` as a dict, or a list of
        them when ``to`` is a list.
    """

    template_fields: Sequence[str] = ("to", "message", "typing", "is_dry_run", "whatsinfinity_conn_id")
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


class WhatsInfinityRestartSessionOperator(WhatsInfinityBaseOperator):
    """
    Restart the connection's WhatsInfinity session.

    :param wipe: Also forget its link, so that it must be linked again by QR or pairing code. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The session's status after the restart, as a dict.
    """

    template_fields: Sequence[str] = ("wipe", "whatsinfinity_conn_id")

    def __init__(self, *, wipe: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wipe = wipe

    def run(self, context: Context) -> dict[str, Any]:
        """Restart the session."""
        wipe = as_bool(self.wipe, "wipe")
        status = self.call(lambda: self.hook.restart_session(wipe=wipe))
        self.log.info(
            "Session %s restarted%s: now %s", status.session_id, " and wiped" if wipe else "", status.status
        )
        return dict(status.to_dict())


class WhatsInfinityCreateSessionOperator(WhatsInfinityBaseOperator):
    """
    Create the connection's session (its Session ID and API key) on WhatsInfinity.

    :param ignore_existing: Succeed when the session already exists, returning its status. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The session's status, as a dict.
    """

    template_fields: Sequence[str] = ("ignore_existing", "whatsinfinity_conn_id")

    def __init__(self, *, ignore_existing: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_existing = ignore_existing

    def run(self, context: Context) -> dict[str, Any]:
        """Create the session."""
        from airflow_provider_whatsinfinity.exceptions import ConflictError

        try:
            status = self.hook.create_session()
        except ConflictError:
            if not as_bool(self.ignore_existing, "ignore_existing"):
                raise AirflowFailException(
                    f"Session of connection {self.whatsinfinity_conn_id!r} already exists; "
                    "pass ignore_existing=True to carry on"
                ) from None
            status = self.call(self.hook.check_session)
            self.log.info("Session %s already exists: %s", status.session_id, status.status)
        except WhatsInfinityError as error:
            raise_for_task(error)
        else:
            self.log.info("Session %s created: %s", status.session_id, status.status)
        return dict(status.to_dict())


class WhatsInfinityPairingCodeOperator(WhatsInfinityBaseOperator):
    """
    Ask for a pairing code, to enter in WhatsApp under Linked Devices; it is logged and returned.

    :param phone_number: The phone's number with country code. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The pairing code.
    """

    template_fields: Sequence[str] = ("phone_number", "whatsinfinity_conn_id")

    def __init__(self, *, phone_number: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phone_number = phone_number

    def run(self, context: Context) -> str:
        """Request the pairing code."""
        code: str = self.call(lambda: self.hook.request_pairing_code(self.phone_number))
        self.log.info("Pairing code: %s (WhatsApp > Linked devices > Link with phone number)", code)
        return code


class WhatsInfinityQrCodeOperator(WhatsInfinityBaseOperator):
    """
    Fetch the session's QR code and write it as a PNG file.

    :param output_path: Where to write the PNG; missing folders are created. Templated.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :return: The path written.
    """

    template_fields: Sequence[str] = ("output_path", "whatsinfinity_conn_id")

    def __init__(self, *, output_path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_path = output_path

    def run(self, context: Context) -> str:
        """Write the QR code."""
        png: bytes = self.call(self.hook.get_qr)
        path = Path(self.output_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        self.log.info(
            "QR code written to %s (%d bytes): scan it in WhatsApp > Linked devices", path, len(png)
        )
        return str(path)


class WhatsInfinityDeleteSessionOperator(WhatsInfinityBaseOperator):
    """
    Delete the connection's session for good.

    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    """

    def run(self, context: Context) -> None:
        """Delete the session."""
        self.call(self.hook.delete_session)
        self.log.info("Session of connection %s deleted", self.whatsinfinity_conn_id)


class WhatsInfinityRotateKeyOperator(WhatsInfinityBaseOperator):
    """
    Rotate the session's API key and hand the new key to ``store_new_key``, and nowhere else.

    The new key never reaches XCom (nothing is returned) or the logs (it is masked). The old key
    stops working at once, so ``store_new_key`` must put the new one where the connection reads it
    from, such as your secrets backend.

    :param store_new_key: Called with the new key and the task context.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    """

    def __init__(self, *, store_new_key: Callable[[str, Context], None], **kwargs: Any) -> None:
        kwargs.setdefault("do_xcom_push", False)
        super().__init__(**kwargs)
        if not callable(store_new_key):
            raise TypeError("store_new_key must be a callable taking (new_key, context)")
        self.store_new_key = store_new_key

    def run(self, context: Context) -> None:
        """Rotate the key and store it."""
        try:
            new_key = self.hook.rotate_key()
        except OutcomeUnknownError as error:
            raise AirflowFailException(self._after_lost_rotation(error)) from error
        except WhatsInfinityError as error:
            raise_for_task(error)
        try:
            self.store_new_key(new_key, context)
        except Exception as error:
            raise AirflowFailException(
                "The key was rotated but store_new_key failed; the old key no longer works. "
                f"Recover the new key from the session's owner. Cause: {type(error).__name__}"
            ) from None
        self.log.info("Session key of connection %s rotated and stored", self.whatsinfinity_conn_id)

    def _after_lost_rotation(self, error: OutcomeUnknownError) -> str:
        """
        Find out with the old key whether a rotation whose answer was lost took effect; say what to do.

        Nothing is retried: a second rotate-key after a first one that did take effect would be refused
        (the old key is dead), and one that did not could still race the first.
        """
        from airflow_provider_whatsinfinity.exceptions import AuthenticationError

        conn_id = self.whatsinfinity_conn_id
        lost = f"rotate-key's answer was lost ({error})"
        # A request that timed out may still be on its way or being handled: give it the time it was
        # allowed before asking whether it landed.
        waited = min(self.hook.get_conn().timeout, ROTATION_SETTLE_MAX)
        time.sleep(waited)
        checked = f"as of {datetime.now(timezone.utc):%H:%M:%S} UTC, {waited:g} s after the rotation"
        try:
            status = self.hook.check_session()
        except AuthenticationError:
            return (
                f"{lost}, and {checked} the service refuses the old key of connection {conn_id!r}: it "
                "changed the key and the new one never reached Airflow. The session cannot be used or "
                "managed with any key Airflow has. Ask WhatsInfinity support to reset the session's key "
                "(quote the requestId above), or create a new session under a new session ID and link it "
                "again"
            )
        except WhatsInfinityError as probe:
            return (
                f"{lost}, and checking the old key failed too ({probe}). Run `airflow connections test "
                f"{conn_id}`: if it passes, the key did not change and this task can run again; if it "
                "answers 401, the service changed the key and the new one was lost: ask WhatsInfinity "
                "support to reset it, or create a new session under a new session ID"
            )
        return (
            f"{lost}, but {checked} the old key of connection {conn_id!r} still works (session "
            f"{status.session_id} is {status.status}): the key was not changed and the connection is "
            "untouched. Check once more with `airflow connections test` before you run the task again"
        )
