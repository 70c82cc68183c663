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
- With several connections (``whatsinfinity_conn_id=["wi_a", "wi_b"]``), the list is spread over
  their sessions, which send concurrently in one event loop, each paced by its own rate limit. The
  record says which session each recipient was given to, and a retry keeps that. A session that
  fails for good (a wrong key, an unknown or disabled session) hands its unsent recipients to the
  others; the results name the session of each send.
- With ``deferrable=True``, a rate-limit wait longer than ``defer_threshold`` seconds (or a full
  queue) is not slept in the worker: the task defers to the triggerer until the session's rate window
  resets, and resumes the list from the same record (a rate-limited send was refused: certainly not
  sent).

The hook and the client are imported only when a task runs, to keep DAG parsing fast.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, cast

from airflow_provider_whatsinfinity._compat import AirflowException, AirflowFailException, conf
from airflow_provider_whatsinfinity.exceptions import (
    AuthenticationError,
    ConflictError,
    OutcomeUnknownError,
    QueueFullError,
    RateLimitedError,
    SessionNotFoundError,
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.media_urls import SIGNED_URL_EXPIRY, public_url_for
from airflow_provider_whatsinfinity.operators.base import WhatsInfinityBaseOperator
from airflow_provider_whatsinfinity.spec import DEFAULT_CONN_ID
from airflow_provider_whatsinfinity.task_helpers import (
    as_bool,
    list_from_text,
    raise_for_task,
    recipients_of,
    run_in_task,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import timedelta

    from airflow.sdk import Context

    from airflow_provider_whatsinfinity.client import SendCallbacks
    from airflow_provider_whatsinfinity.delivery import DeliveryRecord, PlannedSend
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
    from airflow_provider_whatsinfinity.models import SendResult

    #: Sends one prepared message: ``(digits, callbacks) -> SendResult``, awaited.
    Sender = Callable[[str, SendCallbacks], Awaitable[SendResult]]


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

    def log(self, log_error: Callable[..., object]) -> None:
        """Log every recipient not sent to, one line each, with ``log_error``."""
        for problem in self.problems:
            log_error("%s", problem)

    def fail_task(self, log_error: Callable[..., object]) -> None:
        """
        Log every recipient not sent to, if any, then fail the task: retryable only if a retry can help.

        :param log_error: Logs a line at ERROR level, such as the operator's ``log.error``.
        """
        if not self.problems:
            return
        self.log(log_error)
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
#: Seconds a deferrable send waits in the triggerer after a session's queue stayed full: the queue
#: drains only as the session delivers, and the service says nothing of when.
QUEUE_FULL_DEFER_SECONDS = 60.0
#: Errors after which a session cannot send at all: in a send over several sessions, its unsent
#: recipients go to the others.
SESSION_FAILURES = (AuthenticationError, SessionNotFoundError, ConflictError)


class _Session:
    """
    One session (connection) of a send: its sender, its queue of sends, and how it stopped.

    :param conn_id: The connection.
    :param hook: The hook on it, closed when the send is over.
    :param send: Sends one message through it.
    """

    def __init__(self, conn_id: str, hook: WhatsInfinityHook, send: Sender) -> None:
        self.conn_id = conn_id
        self.hook = hook
        self.send = send
        #: ``(number in the list, send)`` still to make through this session, in list order.
        self.queue: list[tuple[int, PlannedSend]] = []
        #: Why it cannot send at all (a send over several sessions: its recipients went to others).
        self.failed: WhatsInfinityError | None = None
        #: The error that stopped it, for the task to fail on (transient: ``retries`` apply).
        self.stopped: WhatsInfinityError | None = None
        #: The refusal it waits out in the triggerer (rate window, full queue), and for how long.
        self.waiting: tuple[WhatsInfinityError, float] | None = None
        #: How many it sent in this execution.
        self.sent = 0
        #: Whether a request of its may be on the wire now (from the pending mark to the answer).
        self.in_flight = False
        #: Set when the send must stop: no request of its leaves any more.
        self.halted = False

    @property
    def takes_more(self) -> bool:
        """Whether it can be given more sends: it has neither failed nor stopped."""
        return self.failed is None and self.stopped is None


def _described(error: WhatsInfinityError | None) -> str:
    """Name an error by its type, status and ``requestId`` only: never the server's text (or a key in it)."""
    if error is None:
        return "failed"
    parts = [type(error).__name__]
    if error.status_code is not None:
        parts.append(f"HTTP {error.status_code}")
    if error.request_id:
        parts.append(f"requestId {error.request_id}")
    return ", ".join(parts)


class _Halted(Exception):
    """Raised instead of sending, once the send stopped: nothing left, nothing is marked."""


class _SendOperator(WhatsInfinityBaseOperator):
    """What the text and media send operators share: recipients, sessions, the record, the XCom."""

    def __init__(
        self,
        *,
        to: Any,
        dry_run: bool | str = False,
        deferrable: bool | str | None = None,
        defer_threshold: float = DEFAULT_DEFER_THRESHOLD,
        whatsinfinity_conn_id: str | list[str] = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        # A list is read by connection_ids(); the hook of the base class is never built from it.
        super().__init__(whatsinfinity_conn_id=cast("str", whatsinfinity_conn_id), **kwargs)
        self.to = to
        # Not "self.dry_run": BaseOperator.dry_run() is a method that `airflow tasks test --dry-run` calls.
        self.is_dry_run = dry_run
        self.deferrable = deferrable
        #: Set by :meth:`execute_complete`: the counters the deferral carried over.
        self._resumed: dict[str, Any] | None = None
        if isinstance(defer_threshold, bool) or not isinstance(defer_threshold, (int, float)):
            raise TypeError(f"defer_threshold must be a number of seconds, not {defer_threshold!r}")
        if not 0 <= defer_threshold < float("inf"):
            raise ValueError(f"defer_threshold must be 0 or more seconds, not {defer_threshold!r}")
        self.defer_threshold = float(defer_threshold)

    def connection_ids(self) -> tuple[list[str], bool]:
        """
        Return the connections to send through, and whether ``whatsinfinity_conn_id`` was a list.

        A list rendered to text by a template (``"['wi_a', 'wi_b']"``) is read as the list.
        """
        given = list_from_text(self.whatsinfinity_conn_id, "whatsinfinity_conn_id")
        if isinstance(given, str):
            ids, many = [given], False
        elif isinstance(given, (list, tuple)):
            ids, many = list(given), True
        else:
            raise AirflowFailException(
                f"whatsinfinity_conn_id must be a connection id or a list of them, not {type(given).__name__}"
            )
        if not ids:
            raise AirflowFailException("whatsinfinity_conn_id is an empty list: name at least one connection")
        for conn_id in ids:
            if not isinstance(conn_id, str) or not conn_id.strip():
                raise AirflowFailException(
                    f"whatsinfinity_conn_id lists {conn_id!r}, which is no connection id"
                )
        twice = sorted({conn_id for conn_id in ids if ids.count(conn_id) > 1})
        if twice:
            raise AirflowFailException(
                f"whatsinfinity_conn_id lists {', '.join(map(repr, twice))} more than once: "
                "name each session once"
            )
        return ids, many

    def defers(self, conn_id: str | None = None) -> bool:
        """
        Whether this send defers to the triggerer for long rate-limit waits.

        ``deferrable`` when given; else the connection's ``deferrable`` extra (the first connection's,
        for a send over several); else Airflow's ``[operators] default_deferrable`` (``False`` unless set).

        :param conn_id: The connection whose extra decides; the operator's (first) connection if ``None``.
        """
        if self.deferrable is not None:
            return as_bool(self.deferrable, "deferrable")
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        conn_id = conn_id or self.connection_ids()[0][0]
        extras = WhatsInfinityHook.get_connection(conn_id).extra_dejson
        if extras.get("deferrable") not in (None, ""):
            return as_bool(extras["deferrable"], "the connection's deferrable extra")
        return conf.getboolean("operators", "default_deferrable", fallback=False)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """
        Resume the list after a deferral for the rate window: everyone already sent is skipped.

        ``to`` is read again, as by a retry: the delivery record knows who was sent to by number, so
        the same list in another order, or read anew from XCom, sends nobody twice.

        :param context: The task's context.
        :param event: The trigger's event: ``{"state": {"sent", "idle", "due"}}``: how many sends the
            record held when the task deferred, and by connection the deferrals in a row after which it
            sent nothing and when its wait ends. Counters, never a phone number.
        """
        state = event.get("state") if isinstance(event, dict) else None
        self._resumed = state if isinstance(state, dict) else {}
        try:
            return self.execute(context)
        finally:
            self._resumed = None

    #: What is sent, for log lines.
    kind = "message"

    def prepare(self, hook: WhatsInfinityHook, dry_run: bool) -> Sender:
        """
        Resolve everything a send through one connection needs (flags, URLs, the connection).

        Runs for every connection before any recipient is marked pending: whatever fails here means
        nothing was sent.

        :param hook: The hook on the connection.
        :param dry_run: Whether the sends only validate.
        :return: The coroutine function that sends one message through it.
        """
        raise NotImplementedError

    def run(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        """
        Send to every recipient that no earlier try of this task reached, and return the results.

        Everything that can fail locally (the numbers, flags, media URL, connections, the request's
        encoding) is resolved first: what fails there sent nothing. Then the sends are spread over
        the sessions, and each goes through :meth:`_deliver`, after the task's
        :class:`~airflow_provider_whatsinfinity.delivery.DeliveryRecord` said what earlier tries did
        with it. Recipients the server refuses one by one (not on WhatsApp, an unknown outcome) do not
        stop the others; the task fails at the end. Errors that concern a whole session or the
        service stop that session (in a send over several, one that fails for good hands its
        recipients over). After a fully successful run the record is stamped complete, so that a
        retry sends nobody again and clearing the task sends again.
        """
        from airflow_provider_whatsinfinity.delivery import DeliveryRecord, delivery_store, plan_sends

        recipients, many = recipients_of(self.to)
        if not recipients:
            raise AirflowFailException("'to' is empty: give at least one phone number")
        sends, merged = self.call(lambda: plan_sends(recipients))
        for note in merged:
            self.log.info("Merged recipients: %s", note)
        conn_ids, several = self.connection_ids()
        dry_run = as_bool(self.is_dry_run, "dry_run")
        resumed = self._resumed
        ti = context.get("ti")
        # A dry run keeps no record: resumed, it would validate the whole list again, for ever.
        store = None if dry_run else delivery_store(context, resumed=resumed is not None)
        record = DeliveryRecord(store, getattr(ti, "max_tries", None))
        if resumed is not None and record.sent_count() < int(resumed.get("sent", 0)):
            # Fail closed: a record that reads back with fewer sends than it held at the deferral
            # was not read (a secrets backend down, a Variable deleted), and would send again.
            raise AirflowFailException(
                f"The delivery record holds {record.sent_count()} sends after the deferral, "
                f"{resumed['sent']} before it: it could not be read back, so nothing more is sent "
                "(nobody gets a message twice). Check the task's state store or its Variable, then "
                "clear the task"
            )
        # Deferring needs a record that outlives the worker, and a task instance to defer.
        defers = store is not None and ti is not None and self.call(lambda: self.defers(conn_ids[0]))
        if defers and "max_rate_limit_wait" not in self.hook_params:
            # Short waits are slept here; a longer one is a deferral (see _defer_for).
            self.hook_params = {**self.hook_params, "max_rate_limit_wait": self.defer_threshold}
        # A session that failed for good earlier in this run (this try or one before it) is not used
        # again: its recipients went to others, which must not hand them back. A clear starts afresh.
        usable = [conn_id for conn_id in conn_ids if conn_id not in record.failed_sessions]
        if not usable:
            raise AirflowFailException(
                f"Every connection failed for good earlier in this run ({record.failed_sessions}); nothing "
                "more is sent. Fix them, then clear the task"
            )
        self._dry_run = dry_run
        sessions = {conn_id: self._open_session(conn_id, dry_run) for conn_id in usable}

        results: list[dict[str, Any]] = [{} for _ in recipients]
        unsent = _Unsent(len(sends))
        sessions_of = self._assign(sends, list(sessions), record, several)
        skipped = 0
        for number, planned in enumerate(sends, start=1):
            earlier = record.state(planned)
            if earlier == "sent":
                skipped += 1
                for position in planned.positions:
                    results[position] = record.result(planned) or {}
            elif earlier is not None:
                unsent.add(
                    f"recipient {number} of {len(sends)} ({planned.digits}): an earlier try may have sent "
                    "it (outcome unknown); not sent again"
                )
            else:
                sessions[sessions_of[planned]].queue.append((number, planned))
        if skipped:
            self.log.info(
                "Skipping %d of %d recipients: already sent (by an earlier try, or before a deferral)",
                skipped,
                len(sends),
            )
        held = record.sent_count()
        self._started = time.time()
        run_in_task(self._drive(sessions, record, unsent, results, defers, several, len(sends)))
        self._settle(sessions, record, unsent, context, several, held)
        record.complete()  # a retry of this run sends nobody again; a clear of the task sends again
        if record.discard_on_success:  # a Variable (Airflow < 3.3): deleted once the task has succeeded
            self.on_success_callback = [*(self.on_success_callback or ()), record.discard]
        return results if many else results[0]

    def _open_session(self, conn_id: str, dry_run: bool) -> _Session:
        """Build a connection's hook and sender; a connection that cannot work fails the task now."""
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        hook = WhatsInfinityHook(whatsinfinity_conn_id=conn_id, **self.hook_params)
        return _Session(conn_id, hook, self.call(lambda: self.prepare(hook, dry_run)))

    def _assign(
        self, sends: list[PlannedSend], conn_ids: list[str], record: DeliveryRecord, several: bool
    ) -> dict[PlannedSend, str]:
        """
        Give each send its session: the one the record names, else the least loaded, in list order.

        For a send over several sessions the choice is written to the record at once, in one write,
        so that a retry or a resumed deferral sends each recipient through the same session.
        """
        if not several:
            return dict.fromkeys(sends, conn_ids[0])
        load = dict.fromkeys(conn_ids, 0)
        chosen: dict[PlannedSend, str] = {}
        for planned in sends:
            kept = record.session_of(planned)
            if kept in load:
                chosen[planned] = kept
                load[kept] += 1
        for planned in sends:
            if planned not in chosen:
                conn_id = min(conn_ids, key=load.__getitem__)
                chosen[planned] = conn_id
                load[conn_id] += 1
        record.assign(chosen)
        return chosen

    async def _drive(
        self,
        sessions: dict[str, _Session],
        record: DeliveryRecord,
        unsent: _Unsent,
        results: list[dict[str, Any]],
        defers: bool,
        several: bool,
        total: int,
    ) -> None:
        """
        Run every session's queue concurrently, hand over the queues of sessions that failed for good.

        An error that stops the send (a record that cannot be written) stops every session before its
        next request: sessions waiting between requests are cancelled, and a request on the wire is
        let finish and recorded, so that it is not reported as "maybe sent" for nothing. The task's
        ``execution_timeout`` (a ``BaseException``) cancels everything at once, as it would stop a
        blocking send; a request cancelled on the wire keeps its ``pending`` mark, never to be sent
        again by this task.
        """
        import asyncio

        running: dict[asyncio.Future[None], _Session] = {}
        errors: list[Exception] = []

        def start(session: _Session) -> None:
            args = (session, record, unsent, results, defers, several, total)
            running[asyncio.ensure_future(self._run_session(*args))] = session

        def stop(error: Exception) -> None:
            errors.append(error)
            for task, session in running.items():
                session.halted = True
                if not session.in_flight:
                    task.cancel()

        try:
            while True:
                if not errors and unsent.stopped is None:
                    for session in sessions.values():
                        idle = session not in running.values() and session.waiting is None
                        if idle and session.queue and session.takes_more:
                            start(session)
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                # The whole batch first: a receiver of a hand-over that finished in this same batch must
                # be started again, not taken for running.
                finished = [running.pop(task) for task in done]
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if isinstance(error, Exception):
                        stop(error)
                    elif error is not None:
                        raise error
                if errors or unsent.stopped is not None:
                    continue
                try:
                    for session in finished:
                        if session.failed is not None and session.queue:
                            self._hand_over(session, sessions, record)
                except Exception as error:  # the record could not be written: nothing more is sent
                    stop(error)
            if errors:
                raise errors[0]
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for session in sessions.values():
                await session.hook.aclose()

    async def _run_session(
        self,
        session: _Session,
        record: DeliveryRecord,
        unsent: _Unsent,
        results: list[dict[str, Any]],
        defers: bool,
        several: bool,
        total: int,
    ) -> None:
        """Send a session's queue in order, until it is empty, the session stops, or answers are lost."""
        while session.queue and unsent.stopped is None and not session.halted:
            number, planned = session.queue[0]
            where = f"recipient {number} of {total} ({planned.digits})"
            try:
                result = await self._deliver(planned, where, session, record, unsent, several)
            except _Halted:
                return
            except WhatsInfinityError as error:
                if defers and isinstance(error, (RateLimitedError, QueueFullError)):
                    wait = (
                        QUEUE_FULL_DEFER_SECONDS if isinstance(error, QueueFullError) else error.retry_after
                    )
                    session.waiting = (error, max(float(wait or self.defer_threshold or 1.0), 1.0))
                elif several and isinstance(error, SESSION_FAILURES) and not self._dry_run:
                    session.failed = error
                    self.log.error(
                        "Connection %r failed for good at %s: %s; its %d unsent recipients go to the other "
                        "sessions",
                        session.conn_id,
                        where,
                        error,
                        len(session.queue),
                    )
                else:
                    self.log.error(
                        "Stopped %sat %s: %s", f"{session.conn_id!r} " if several else "", where, error
                    )
                    session.stopped = error
                return
            session.queue.pop(0)
            if result is not None:
                session.sent += 1
                for position in planned.positions:
                    results[position] = result

    def _hand_over(self, failed: _Session, sessions: dict[str, _Session], record: DeliveryRecord) -> None:
        """
        Give a failed session's unsent sends to the sessions that can still send, least loaded first.

        With none left, the failed session's error stops it (and the task). The new sessions, the
        failed one and its error are recorded before any of them sends.
        """
        receivers = [session for session in sessions.values() if session.takes_more]
        if not receivers:
            failed.stopped = failed.failed
            return
        load = {session.conn_id: len(session.queue) for session in receivers}
        moved: dict[PlannedSend, str] = {}
        for _, planned in failed.queue:
            moved[planned] = min(load, key=load.__getitem__)
            load[moved[planned]] += 1
        # Recorded before any receiver has them: a write that fails hands nobody over.
        record.assign(moved, failed=failed.conn_id, failure=_described(failed.failed))
        for number, planned in failed.queue:
            sessions[moved[planned]].queue.append((number, planned))
        failed.queue.clear()
        self.log.warning(
            "Handed %d recipients of connection %r over to %s",
            len(moved),
            failed.conn_id,
            ", ".join(sorted({repr(conn_id) for conn_id in moved.values()})),
        )

    def _settle(
        self,
        sessions: dict[str, _Session],
        record: DeliveryRecord,
        unsent: _Unsent,
        context: Context,
        several: bool,
        held: int,
    ) -> None:
        """
        Decide how this execution ends once every session stopped: fail, defer, or go on to succeed.

        :param held: How many sends the record held as sent before this execution sent anything.
        """
        failed = record.failed_sessions
        if failed:
            self.log.warning("Sessions that failed for good in this send: %s", failed)
            ti = context.get("ti")
            if ti is not None:
                ti.xcom_push(key="failed_sessions", value=failed)
        left = sorted(
            ((number, planned) for session in sessions.values() for number, planned in session.queue),
            key=lambda item: item[0],
        )
        if unsent.stopped is not None:
            # Answers are being lost (a proxy, an outage): sending on would turn everyone left into
            # "unknown". Those not yet sent certainly were not.
            for number, planned in left:
                unsent.add(f"recipient {number} of {unsent.total} ({planned.digits}): not attempted")
                unsent.not_attempted += 1
            unsent.fail_task(self.log.error)
        stopped = [session.stopped for session in sessions.values() if session.stopped is not None]
        if stopped:
            unsent.log(self.log.error)
            # A transient error first: its retry sends everyone left, through every session.
            error = next((error for error in stopped if error.transient), stopped[0])
            if left and error.transient:
                self.log.error("%d recipients were not sent to; a retry sends them", len(left))
            raise_for_task(error)
        waiting = [session for session in sessions.values() if session.waiting and session.queue]
        if waiting:
            self._defer_for(waiting, sessions, record, len(left), unsent.total, record.sent_count() > held)
        if left:
            # Never reached by design; if it is, the task must not be stamped complete with people unsent.
            raise AirflowException(
                f"{len(left)} of {unsent.total} recipients were left unsent; a retry sends them"
            )
        unsent.fail_task(self.log.error)

    def _defer_for(
        self,
        waiting: list[_Session],
        sessions: dict[str, _Session],
        record: DeliveryRecord,
        left: int,
        total: int,
        progressed: bool,
    ) -> NoReturn:
        """
        Defer the task until the first waiting session may send again; it resumes in :meth:`execute_complete`.

        The refused sends were forgotten by the record (a 429 or a full queue certainly did not go
        out). The task fails instead, with the refusal (transient: ``retries`` apply), when the service
        asks for more than :data:`MAX_DEFER_SECONDS`, or when a session was refused again, with
        nothing sent, after :data:`MAX_DEFERRALS_WITHOUT_PROGRESS` deferrals that each outlasted its own
        wait (a session still inside its window when the task resumed for another is not counted).

        A session given up that way in a send over several hands its recipients to the others, which
        go on; alone, it fails the task.

        :param waiting: The sessions waiting, each with its refusal and wait.
        :param sessions: Every session of the send.
        :param record: The delivery record.
        :param left: How many sends are left.
        :param total: How many the list holds.
        :param progressed: Whether this execution sent anyone.
        """
        from datetime import datetime, timedelta, timezone

        from airflow_provider_whatsinfinity.triggers.rate_window import WhatsInfinityRateWindowTrigger

        resumed = self._resumed or {}
        was_idle: dict[str, Any] = resumed["idle"] if isinstance(resumed.get("idle"), dict) else {}
        was_due: dict[str, Any] = resumed["due"] if isinstance(resumed.get("due"), dict) else {}
        now = time.time()
        idle, due = {}, {}
        refusals = [(session, session.waiting) for session in waiting if session.waiting is not None]
        for session, (error, wait) in refusals:
            before = int(was_idle.get(session.conn_id, 0))
            if session.sent:
                idle[session.conn_id] = 0
            elif self._started >= float(was_due.get(session.conn_id, 0)):
                idle[session.conn_id] = before + 1  # its own wait had passed, and it was refused again
            else:
                idle[session.conn_id] = before
            due[session.conn_id] = now + wait
            if wait > MAX_DEFER_SECONDS or idle[session.conn_id] > MAX_DEFERRALS_WITHOUT_PROGRESS:
                self.log.error(
                    "%r stopped with %d of %d recipients left: %s%s",
                    session.conn_id,
                    left,
                    total,
                    f"still refused after {idle[session.conn_id] - 1} deferrals that sent nobody: "
                    if wait <= MAX_DEFER_SECONDS
                    else "the service asks for a wait longer than the longest deferral: ",
                    error,
                )
                # Given up for this send: its recipients go to the other sessions, if any can take them.
                session.failed, session.waiting = error, None
                del idle[session.conn_id], due[session.conn_id]
                self._hand_over(session, sessions, record)
                if session.stopped is not None:
                    raise_for_task(error)
        quiet = 0 if progressed else int(resumed.get("quiet", 0)) + 1
        if quiet > 2 * MAX_DEFERRALS_WITHOUT_PROGRESS:
            # However the sessions' own counts stand (handed around, resumed early), nothing went out.
            error = min(refusals, key=lambda item: item[1][1])[1][0]
            self.log.error("Stopped: %d deferrals in a row sent nobody: %s", quiet - 1, error)
            raise_for_task(error)
        pending = [session for session in sessions.values() if session.queue and session.takes_more]
        waits = [session.waiting for session in pending if session.waiting is not None]
        if len(waits) == len(pending):
            error, wait = min(waits, key=lambda refusal: refusal[1])
            self.log.info(
                "%s (requestId %s) with %d of %d recipients left: deferring %.0f s, %s; the list resumes "
                "there, and nobody already sent is sent again",
                "Queue full" if isinstance(error, QueueFullError) else "Rate limited",
                error.request_id,
                left,
                total,
                wait,
                "for the session's queue to drain"
                if isinstance(error, QueueFullError)
                else "until the session's rate window resets",
            )
        else:  # a session that can send now was handed recipients: resume at once
            wait = 1.0
            self.log.info(
                "Deferring %.0f s to resume the sessions that took over; %d of %d left", wait, left, total
            )
        moment = datetime.now(timezone.utc) + timedelta(seconds=wait)
        state = {"sent": record.sent_count(), "idle": idle, "due": due, "quiet": quiet}
        self.defer(
            trigger=WhatsInfinityRateWindowTrigger(moment=moment.isoformat(), state=state),
            method_name="execute_complete",
        )

    async def _deliver(
        self,
        planned: PlannedSend,
        where: str,
        session: _Session,
        record: DeliveryRecord,
        unsent: _Unsent,
        several: bool,
    ) -> dict[str, Any] | None:
        """
        Send one planned send that no earlier try started; return its result, if it has one.

        It is marked ``pending`` in the record only as its request is about to leave, and ``sent``
        after the answer: a try that dies mid-send (a timeout, a lost worker) leaves a mark, and a
        later try never sends to a ``pending`` or ``unknown`` recipient again but reports it. A
        refusal before the request was acted on clears the mark, so that a later try may send it.
        Errors that concern the whole session are raised, for :meth:`_run_session` to act on.
        """
        from airflow_provider_whatsinfinity.client import SendCallbacks
        from airflow_provider_whatsinfinity.exceptions import NotOnWhatsAppError, ValidationError

        def before_send() -> None:
            if session.halted or unsent.stopped is not None:
                raise _Halted  # nothing leaves, nothing is marked
            record.mark_pending(planned)
            session.in_flight = True

        def on_refused() -> None:  # a wait after a certain refusal
            session.in_flight = False
            record.forget(planned)
            if session.halted or unsent.stopped is not None:
                raise _Halted  # not worth waiting for: the send is stopping

        callbacks = SendCallbacks(before_send=before_send, on_refused=on_refused)
        try:
            result = (await session.send(planned.digits, callbacks)).to_dict()
        except _Halted:
            raise
        except OutcomeUnknownError as error:
            record.mark_unknown(planned)
            unsent.add(f"{where}: outcome unknown, not sent again: {error}", error)
            unsent.stopped = error
            return None
        except (NotOnWhatsAppError, ValidationError) as error:
            record.forget(planned)  # refused, or never left: a later try may send it
            unsent.add(f"{where}: {type(error).__name__}: {error}", error)
            return None
        except WhatsInfinityError:
            record.forget(planned)  # refused before it was acted on: a retry may send it
            raise
        finally:
            session.in_flight = False  # no await until the answer is recorded: nothing cancels it now
        if several:
            result["whatsinfinity_conn_id"] = session.conn_id
            handed_from = record.handed_from(planned)
            if handed_from is not None:
                result["reassigned_from"] = handed_from
        record.mark_sent(planned, result)
        self.log.info(
            "%s %s to %s (messageId %s, requestId %s%s)",
            "Validated" if result["dry_run"] else "Queued" if result["queued"] else "Delivered",
            self.kind,
            result["to"],
            result["message_id"],
            result["request_id"],
            f", connection {session.conn_id!r}" if several else "",
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
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use, or a list of them: the
        recipients are then spread over their sessions, which send concurrently. Templated.
    :return: The :class:`~airflow_provider_whatsinfinity.models.SendResult` as a dict, or a list of
        them when ``to`` is a list. Over several connections each also names its
        ``whatsinfinity_conn_id`` (and ``reassigned_from``, the session that failed for good, when it
        was handed over); those sessions are also pushed as the XCom ``failed_sessions``.
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

    def prepare(self, hook: WhatsInfinityHook, dry_run: bool) -> Sender:
        """
        Resolve the flags and the connection; return the sender of this text through it.

        :param hook: The hook on the connection.
        :param dry_run: Whether the sends only validate.
        """
        typing = as_bool(self.typing, "typing")
        hook.prepare_async_client()  # the connection is read now, before anyone is marked pending

        async def send(to: str, callbacks: SendCallbacks) -> SendResult:
            return await hook.asend_text(
                to, self.message, typing=typing, dry_run=dry_run, callbacks=callbacks
            )

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
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use, or a list of them: the
        recipients are then spread over their sessions, which send concurrently. Templated.
    :return: The :class:`~airflow_provider_whatsinfinity.models.SendResult` as a dict, or a list of
        them when ``to`` is a list. Over several connections each also names its
        ``whatsinfinity_conn_id`` (and ``reassigned_from``, the session that failed for good, when it
        was handed over); those sessions are also pushed as the XCom ``failed_sessions``.
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

    def prepare(self, hook: WhatsInfinityHook, dry_run: bool) -> Sender:
        """
        Resolve (and sign) the URL and the connection; return the sender of this media through it.

        :param hook: The hook on the connection.
        :param dry_run: Whether the sends only validate.
        """
        url = self.public_url  # signed once, for every connection
        hook.prepare_async_client()  # the connection is read now, before anyone is marked pending

        async def send(to: str, callbacks: SendCallbacks) -> SendResult:
            return await hook.asend_media(
                to,
                url,
                media_type=self.media_type,
                caption=self.caption or None,
                file_name=self.file_name or None,
                dry_run=dry_run,
                callbacks=callbacks,
            )

        return send
