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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

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
    digits = [normalize_phone(recipient) for recipient in recipients]
    spellings = [str(recipient).strip() for recipient in recipients]
    seen: Counter[tuple[str, str]] = Counter()
    positions: dict[tuple[str, int], list[int]] = {}
    for position, (number, spelling) in enumerate(zip(digits, spellings, strict=True)):
        seen[number, spelling] += 1
        positions.setdefault((number, seen[number, spelling]), []).append(position)
    sends = sorted(
        (PlannedSend(number, occurrence, tuple(where)) for (number, occurrence), where in positions.items()),
        key=lambda send: send.positions[0],
    )
    notes = []
    for number in dict.fromkeys(digits):
        written = sorted({spellings[i] for i, d in enumerate(digits) if d == number})
        if len(written) > 1:
            notes.append(f"{' and '.join(map(repr, written))} are the same number {number}: sent once")
    return sends, notes


class DeliveryRecord:
    """
    What earlier tries of a task did with each send, kept in its ``task_state_store``.

    Without a store (a dry run, or an Airflow without ``task_state_store``) the record lives in
    memory only: it still guards one try, but not a retry.

    :param store: The task's ``task_state_store``, or ``None``.
    """

    #: The ``task_state_store`` key of the record.
    KEY = "whatsinfinity_delivery"
    #: The key and format (``"index:digits"`` slots) written by versions up to 0.1; read once, so that
    #: a retry after an upgrade still skips the recipients already sent.
    LEGACY_KEY = "whatsinfinity_accepted"

    def __init__(self, store: Any | None) -> None:
        self._store = store
        self._entries: dict[str, dict[str, Any]] = {}
        self._legacy = False
        if store is None:
            return
        stored = store.get(self.KEY)
        if isinstance(stored, dict):
            self._entries = {str(k): dict(v) for k, v in stored.items() if isinstance(v, dict)}
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
        state = self._entries.get(send.key, {}).get("state")
        return state if state in ("pending", "sent", "unknown") else None

    def result(self, send: PlannedSend) -> dict[str, Any] | None:
        """
        Return the result an earlier try recorded for a sent send.

        :param send: The send.
        """
        result = self._entries.get(send.key, {}).get("result")
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

    def clear(self) -> None:
        """Forget everything once the whole list went out: clearing the task later sends it again."""
        self._entries.clear()
        if self._store is not None:
            self._store.delete(self.KEY)
            if self._legacy:
                self._store.delete(self.LEGACY_KEY)
                self._legacy = False

    def _write(self, send: PlannedSend, entry: dict[str, Any] | None) -> None:
        if entry is None:
            if send.key not in self._entries:
                return  # refused before it was ever marked: nothing to write
            del self._entries[send.key]
        else:
            self._entries[send.key] = entry
        if self._store is None:
            return
        self._store.set(self.KEY, self._entries)
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
