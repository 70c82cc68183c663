"""
The delivery record: which recipients of a list send went out, so that a retry never sends twice.

A send operator plans its list (:func:`plan_sends`), then, for each send, asks the record what an
earlier try did with it. A send is marked ``pending`` right before its request goes on the wire,
``sent`` once the server accepted it, and ``unknown`` when its outcome was lost. A later try skips a
``sent`` recipient and never sends again to a ``pending`` or ``unknown`` one: it may have gone out.
Anything that fails before the request leaves leaves no mark, so that recipient is sent next time.

The record is kept in the task's ``task_state_store`` (Airflow 3.3+), which lives across the tries of
one task instance, under :attr:`DeliveryRecord.KEY`. It is keyed by the normalized number, not by
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

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_whatsinfinity._compat import AirflowFailException
from airflow_provider_whatsinfinity.validation import normalize_phone

if TYPE_CHECKING:
    from collections.abc import Sequence

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


class DeliveryRecord:
    """
    What earlier tries of a task did with each send, kept in its ``task_state_store``.

    Without a store (a dry run, or an Airflow without ``task_state_store``) the record lives in
    memory only: it still guards one try, but not a retry.

    :param store: The task's ``task_state_store``, or ``None``.
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
        self._legacy = False
        #: Whether an earlier try of this run sent the whole list.
        self.completed = False
        if store is None:
            return
        stored = store.get(self.KEY)
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
        self.completed = True
        self._save()

    def _write(self, send: PlannedSend, entry: dict[str, Any] | None) -> None:
        if entry is None:
            if send.key not in self._entries:
                return  # refused before it was ever marked: nothing to write
            del self._entries[send.key]
        else:
            self._entries[send.key] = entry
        self._save()

    def _save(self) -> None:
        if self._store is None:
            return
        value: dict[str, Any] = {"sends": self._entries}
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
