"""
The delivery record: which recipients of a list send went out, so that a retry never sends twice.

A send operator plans its list (:func:`plan_sends`), then, for each send, asks the record what an
earlier try did with it. A send is marked ``pending`` right before its request goes on the wire,
``sent`` once the server accepted it, and ``unknown`` when its outcome was lost. A later try skips a
``sent`` recipient and never sends again to a ``pending`` or ``unknown`` one: it may have gone out.
Anything that fails before the request leaves leaves no mark, so that recipient is sent next time.

The record is kept in the task's ``task_state_store`` (Airflow 3.3+), which lives across the tries of
one task instance, under :attr:`DeliveryRecord.KEY`. Airflow 3.0 to 3.2 have no such store: there it
is an Airflow Variable of its own per task instance (:class:`VariableStore`), deleted once the task
succeeds. It is keyed by the normalized number, not by
list position: a retry that gets the list in another order (``list(set(...))`` parsed again with
another hash seed) still skips exactly the people already served.

A list that went out in full is not forgotten inside ``execute``: the task can still fail after it
(pushing the XCom, ``post_execute``, a killed worker), and its retry must not send again. It is
stamped *complete* with the task instance's ``max_tries`` instead, which retries keep and a user's
clear changes: a clear starts a new record, so that clearing a task sends again.

The record fails closed: a value it cannot read stops the task, and an entry it cannot read counts
as *unknown*, never as "not started".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_whatsinfinity._compat import (
    AirflowException,
    AirflowFailException,
    delete_task_variable,
    read_task_variable,
    task_instance_state,
    write_task_variable,
)
from airflow_provider_whatsinfinity.validation import normalize_phone

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow.sdk import Context

log = logging.getLogger(__name__)

DeliveryState = Literal["pending", "sent", "unknown"]


@dataclass(frozen=True)
class PlannedSend:
    """
    One send of a list: a number, and which of its deliberate repeats this is.

    :param digits: The normalized number.
    :param occurrence: 1 for the first send to the number; 2, 3, ... when the same entry is listed
        again on purpose.
    :param positions: Where in the list this send was written (several when spellings were merged).
    """

    digits: str
    occurrence: int
    positions: tuple[int, ...]

    @property
    def key(self) -> str:
        """The record's key for this send: the number, with ``#2``, ``#3``... for repeats."""
        return self.digits if self.occurrence == 1 else f"{self.digits}#{self.occurrence}"


def plan_sends(recipients: Sequence[str | int]) -> tuple[list[PlannedSend], list[str]]:
    """
    Turn a list of recipients into the sends to make, and say which entries were merged.

    Every number is checked first (a typo in the fifth must not half-send a list). An entry written
    the same way twice is sent twice: it was listed twice on purpose. Two spellings of one number
    (``+91 99999 99999`` and ``919999999999``) are one person: sent once, and the merge is reported.

    :param recipients: The numbers as given.
    :return: The sends in the order of their first position, and one note per merged number.
    """
    seen: Counter[tuple[str, str]] = Counter()
    positions: dict[tuple[str, int], list[int]] = {}
    written: dict[str, dict[str, None]] = {}  # number -> its spellings, in list order
    for position, recipient in enumerate(recipients):
        number, spelling = normalize_phone(recipient), str(recipient).strip()
        seen[number, spelling] += 1
        positions.setdefault((number, seen[number, spelling]), []).append(position)
        written.setdefault(number, {})[spelling] = None
    sends = sorted(
        (PlannedSend(number, occurrence, tuple(where)) for (number, occurrence), where in positions.items()),
        key=lambda send: send.positions[0],
    )
    notes = [
        f"{' and '.join(map(repr, sorted(spellings)))} are the same number {number}: sent once"
        for number, spellings in written.items()
        if len(spellings) > 1
    ]
    return sends, notes


class VariableStore:
    """
    A task instance's own ``task_state_store`` for Airflow 3.0 to 3.2, kept in one Airflow Variable.

    The same ``get``, ``set`` and ``delete`` as ``task_state_store``; the keys and their values live
    together as one JSON object in the Variable :attr:`name`, read once when the store is made and
    written whole on every change, through the Task SDK's supervisor so that a failed write raises.
    The Variable's key is a digest of the DAG, task, run and map index (their characters need not fit
    a URL path, nor their length a Variable key); its description names them, for people who find it
    in the UI. :meth:`discard` deletes it, once the task has succeeded.

    :param dag_id: The task instance's DAG.
    :param task_id: Its task.
    :param run_id: Its DAG run.
    :param map_index: Its map index (-1 when it is not mapped).
    """

    #: What every such Variable's key starts with.
    PREFIX = "whatsinfinity_delivery_"

    def __init__(
        self,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int,
        try_number: int = 1,
        resumed: bool = False,
    ) -> None:
        identity = json.dumps([dag_id, task_id, run_id, map_index])
        self.name = self.PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:40]
        self.description = (
            f"airflow-provider-whatsinfinity's delivery record of task {task_id!r} in DAG {dag_id!r}, "
            f"run {run_id!r}, map index {map_index}: which recipients earlier tries reached, so that a "
            "retry never sends to them twice. Deleted when the task succeeds; delete it by hand only to "
            "send the whole list again."
        )
        stored = self._read(self.name)
        if stored is None and (try_number > 1 or resumed):
            # A retry, or a resume after a deferral, that finds no record: either nothing was sent yet,
            # or the API server could not read it (it answers "not found" when its secrets backends fail).
            self._check_read_path()
            stored = self._read(self.name)
        try:
            values = json.loads(stored) if stored is not None else {}
        except ValueError:
            values = None
        if not isinstance(values, dict):
            raise AirflowFailException(
                f"The delivery record in Airflow Variable {self.name!r} cannot be read; nothing was sent, "
                "so that nobody gets a message twice. Inspect it, and delete it to start the list afresh"
            )
        self._values: dict[str, Any] = values

    @staticmethod
    def _read(name: str) -> str | None:
        try:
            return read_task_variable(name)
        except Exception as error:
            raise AirflowException(
                f"Could not read the delivery record (Airflow Variable {name!r}): "
                f"{type(error).__name__}: {error}; nothing was sent"
            ) from error

    def _check_read_path(self) -> None:
        """Write a nonce beside the record and read it back: "not found" must mean not found."""
        probe, nonce = f"{self.name}_probe", secrets.token_hex(16)
        try:
            write_task_variable(probe, nonce, "airflow-provider-whatsinfinity: a read check, deleted at once")
            seen = read_task_variable(probe)
            delete_task_variable(probe)
        except Exception as error:
            seen = f"{type(error).__name__}: {error}"
        if seen != nonce:
            raise AirflowException(
                f"This retry found no delivery record (Airflow Variable {self.name!r}), and the API server "
                f"cannot read back a Variable just written ({seen!r}): its Variables cannot be trusted "
                "now (a secrets backend or Fernet key problem?), so nothing was sent, for nobody to get "
                "a message twice"
            )

    @classmethod
    def for_task(cls, context: Context, resumed: bool = False) -> VariableStore:
        """
        Return the store of the task instance a context belongs to.

        :param context: The running task's context.
        :param resumed: Whether the task resumes after a deferral (sends may have gone out already).
        """
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(
            ti.dag_id,
            ti.task_id,
            ti.run_id,
            -1 if map_index is None else int(map_index),
            try_number=int(getattr(ti, "try_number", 1) or 1),
            resumed=resumed,
        )

    def get(self, key: str) -> Any:
        """
        Return a key's value, or ``None``.

        :param key: The key.
        """
        return self._values.get(key)

    def set(self, key: str, value: Any) -> None:
        """
        Set a key's value, and write the Variable; raise when the write fails.

        :param key: The key.
        :param value: A JSON-serializable value.
        """
        self._write({**self._values, key: value})

    def delete(self, key: str) -> None:
        """
        Remove a key, and write the Variable (delete it when nothing is left).

        :param key: The key.
        """
        if key in self._values:
            self._write({name: value for name, value in self._values.items() if name != key})

    def discard(self) -> None:
        """Delete the Variable: the task succeeded, and its record is no longer needed."""
        if self._values:
            delete_task_variable(self.name)
            self._values = {}

    def _write(self, values: dict[str, Any]) -> None:
        if values:
            write_task_variable(self.name, json.dumps(values), self.description)
        else:
            delete_task_variable(self.name)
        self._values = values


def delivery_store(context: Context, resumed: bool = False) -> Any:
    """
    Return where a running task keeps its delivery record: ``task_state_store``, or a Variable.

    ``None`` (memory only) when the context has neither store nor task instance, as when a test calls
    ``execute`` itself.

    :param context: The running task's context.
    :param resumed: Whether the task resumes after a deferral.
    """
    store = context.get("task_state_store")
    if store is not None or context.get("ti") is None:  # no task instance: execute() called by hand
        return store
    return VariableStore.for_task(context, resumed=resumed)


class DeliveryRecord:
    """
    What earlier tries of a task did with each send, kept in its ``task_state_store``.

    On Airflow 3.0 to 3.2 the store is a :class:`VariableStore`. Without a store (a dry run) the
    record lives in memory only: it still guards one try, but not a retry.

    :param store: The task's ``task_state_store`` or :class:`VariableStore`, or ``None``.
    :param run_stamp: What tells this run of the task instance from the next one a user's clear
        starts: its ``max_tries`` (retries keep it, a clear changes it); ``None`` when unknown.
    """

    #: The ``task_state_store`` key of the record.
    KEY = "whatsinfinity_delivery"
    #: The key and format (``"index:digits"`` slots) written by versions up to 0.1; read once, so that
    #: a retry after an upgrade still skips the recipients already sent.
    LEGACY_KEY = "whatsinfinity_accepted"

    def __init__(self, store: Any | None, run_stamp: int | None = None) -> None:
        self._store = store
        self._stamp = run_stamp
        self._entries: dict[str, Any] = {}
        self._sessions: dict[str, str] = {}
        self._handed: dict[str, str] = {}
        self._failed: dict[str, str] = {}
        self._legacy = False
        self._saved = False
        #: Whether an earlier try of this run sent the whole list.
        self.completed = False
        if store is None:
            return
        stored = store.get(self.KEY)
        self._saved = stored is not None
        if stored is not None:
            if not isinstance(stored, dict) or not isinstance(stored.get("sends"), dict):
                raise AirflowFailException(
                    f"The delivery record in task_state_store key {self.KEY!r} cannot be read "
                    f"({type(stored).__name__}); nothing was sent, so that nobody gets a message twice. "
                    "Inspect it, and delete the key to start the list afresh"
                )
            if "completed" in stored and (run_stamp is None or stored["completed"] != run_stamp):
                stored = {"sends": {}}  # the list went out in full, and the task was cleared since
            self._entries = dict(stored["sends"])
            for name, kept in (
                ("sessions", self._sessions),
                ("handed", self._handed),
                ("failed", self._failed),
            ):
                value = stored.get(name)
                if isinstance(value, dict):
                    kept.update({str(key): str(text) for key, text in value.items()})
            self.completed = "completed" in stored
        legacy = store.get(self.LEGACY_KEY)
        if isinstance(legacy, dict) and legacy:
            self._legacy = True
            for key, entry in _from_legacy(legacy).items():
                self._entries.setdefault(key, entry)

    def state(self, send: PlannedSend) -> DeliveryState | None:
        """
        Return what an earlier try did with a send, or ``None`` when it never started it.

        :param send: The send.
        """
        if send.key not in self._entries:
            return None
        entry = self._entries[send.key]
        state = entry.get("state") if isinstance(entry, dict) else None
        # Anything else was written by something we do not know: it may have gone out.
        return state if state in ("pending", "sent") else "unknown"

    def sent_count(self) -> int:
        """Return how many sends the record holds as sent."""
        return sum(
            1 for entry in self._entries.values() if isinstance(entry, dict) and entry.get("state") == "sent"
        )

    def session_of(self, send: PlannedSend) -> str | None:
        """
        Return the connection (session) a send of a multi-session list was given to, if any.

        :param send: The send.
        """
        return self._sessions.get(send.key)

    def handed_from(self, send: PlannedSend) -> str | None:
        """
        Return the connection that failed for good and handed this send over, if one did.

        :param send: The send.
        """
        return self._handed.get(send.key)

    @property
    def failed_sessions(self) -> dict[str, str]:
        """The connections that failed for good in this run, each with what its error was."""
        return dict(self._failed)

    def assign(
        self, sessions: dict[PlannedSend, str], failed: str | None = None, failure: str | None = None
    ) -> None:
        """
        Record which connection (session) sends each of these sends; one write for them all.

        A retry and a resumed deferral send each one through the same session, and a session that fails
        for good hands its unsent ones over by assigning them again, naming itself and its failure.

        :param sessions: The connection id of each send.
        :param failed: The connection that failed for good and hands these sends over, if one does.
        :param failure: What its error was (its type, status and ``requestId``; never the server's text).
        """
        changed = {
            send.key: conn_id for send, conn_id in sessions.items() if self._sessions.get(send.key) != conn_id
        }
        if not changed and failed is None:
            return
        with self._changing():
            if failed is not None:
                self._handed.update(dict.fromkeys(changed, failed))
                self._failed[failed] = failure or "failed"
            self._sessions.update(changed)

    def result(self, send: PlannedSend) -> dict[str, Any] | None:
        """
        Return the result an earlier try recorded for a sent send.

        :param send: The send.
        """
        entry = self._entries.get(send.key)
        result = entry.get("result") if isinstance(entry, dict) else None
        return dict(result) if isinstance(result, dict) else None

    def mark_pending(self, send: PlannedSend) -> None:
        """
        Record that a send's request is about to leave: from now on it may have gone out.

        :param send: The send.
        """
        self._write(send, {"state": "pending"})

    def mark_sent(self, send: PlannedSend, result: dict[str, Any]) -> None:
        """
        Record that the server accepted a send, with its result.

        :param send: The send.
        :param result: The send's result, as returned to XCom.
        """
        self._write(send, {"state": "sent", "result": result})

    def mark_unknown(self, send: PlannedSend) -> None:
        """
        Record that a send's outcome was lost: it is never sent again by this task.

        :param send: The send.
        """
        self._write(send, {"state": "unknown"})

    def forget(self, send: PlannedSend) -> None:
        """
        Record that the server refused a send before acting on it: a later try may send it.

        :param send: The send.
        """
        self._write(send, None)

    def complete(self) -> None:
        """
        Record that the whole list went out, for this run of the task instance.

        A retry of this run (the task failed after ``execute``) sends nobody again; a user's clear
        starts a new run, and with it a new list.
        """
        with self._changing():
            self.completed = True

    @property
    def discard_on_success(self) -> bool:
        """Whether the record must be deleted once the task succeeds (a :class:`VariableStore`)."""
        return isinstance(self._store, VariableStore)

    def discard(self, context: Context | None = None) -> None:
        """
        Delete a :class:`VariableStore`'s record, as a success callback; a failure is only logged.

        Only once the API server has the task instance as ``success``. A ``task_state_store`` keeps
        the record (stamped complete), as Airflow's ``[state_store] clear_on_success`` decides.

        :param context: The task's context, when called as a callback.
        """
        if not isinstance(self._store, VariableStore):
            return
        ti = (context or {}).get("ti")
        try:
            # Airflow 3.2 runs success callbacks even when reporting the success failed; the task may
            # then run again, and must find its record.
            state = task_instance_state(ti) if ti is not None else None
            if state != "success":
                log.warning(
                    "Kept the delivery record (Airflow Variable %r): the API server has this task as %s, "
                    "not success, so it may run again",
                    self._store.name,
                    state,
                )
                return
            self._store.discard()
        except Exception as error:  # the task succeeded: a leftover record sends nobody twice
            log.warning(
                "Could not delete the delivery record (Airflow Variable %r) after success: %s: %s. "
                "It does no harm; delete it by hand",
                self._store.name,
                type(error).__name__,
                error,
            )

    def _write(self, send: PlannedSend, entry: dict[str, Any] | None) -> None:
        if entry is None and send.key not in self._entries:
            return  # refused before it was ever marked: nothing to write
        with self._changing():
            if entry is None:
                del self._entries[send.key]
            else:
                self._entries[send.key] = entry

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """
        Change the record in memory, then save it; a save that fails leaves the memory as it was.

        Else a mark whose write failed (a ``pending`` for a request that then never left) would be
        saved by the next write that succeeds, and its recipient never sent.
        """
        before = (dict(self._entries), dict(self._sessions), dict(self._handed), dict(self._failed))
        completed = self.completed
        try:
            yield
            self._save()
        except BaseException:
            self._entries, self._sessions, self._handed, self._failed = before
            self.completed = completed
            raise

    def _save(self) -> None:
        if self._store is None:
            return
        if not self._entries and not self._sessions and not self._failed and not self.completed:
            if self._saved:
                self._store.delete(self.KEY)  # nothing to remember: nothing left behind
                self._saved = False
        else:
            self._saved = True
            value: dict[str, Any] = {"sends": self._entries}
            for name, kept in (
                ("sessions", self._sessions),
                ("handed", self._handed),
                ("failed", self._failed),
            ):
                if kept:
                    value[name] = kept
            if self.completed:
                value["completed"] = self._stamp
            self._store.set(self.KEY, value)
        if self._legacy:  # its entries live on under KEY now
            self._store.delete(self.LEGACY_KEY)
            self._legacy = False


def _from_legacy(legacy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Turn the old ``"index:digits"`` slots into keys by number, repeats numbered in list order."""
    slots = []
    for slot, entry in legacy.items():
        index, _, number = str(slot).partition(":")
        if index.isdigit() and number and isinstance(entry, dict):
            slots.append((int(index), number, entry))
    occurrences: Counter[str] = Counter()
    entries = {}
    for _, number, entry in sorted(slots, key=lambda slot: slot[0]):
        occurrences[number] += 1
        key = number if occurrences[number] == 1 else f"{number}#{occurrences[number]}"
        entries[key] = dict(entry)
    return entries
