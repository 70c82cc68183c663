"""
The ``--state-file``: a JSON snapshot, and a journal of every change made since it was written.

Each change (a session created or changed, a message queued or delivered, ...) is one JSON line
appended to ``<state file>.journal``: one small write, however much is stored already. The journal is
folded into a new snapshot at start-up, at shutdown, on reset, and whenever it holds as many records
as the snapshot (and at least :data:`COMPACT_MIN_RECORDS`). Rewriting the snapshot costs as much as
everything stored, so spread over the changes that led to it, each change costs O(1).

What survives what:

- A journal line is written (one ``write``, no ``fsync``) before the request that made the change is
  answered, so a killed emulator keeps everything it answered for; a power cut may lose the last lines.
- A snapshot is written to a temp file beside the state file, fsynced, renamed over the old one, and
  the directory fsynced. Temp files that a kill left behind are removed at start-up.
- Records are numbered and a snapshot says up to which number it holds them, so a kill between the
  rename and emptying the journal never applies a change twice.
- A torn last line (a write cut off by a crash) is ignored with a warning. Any other line that does not
  parse stops start-up with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_whatsinfinity.emulator.model import STATUSES, Message, Session

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

log = logging.getLogger("whatsinfinity.emulator")

SNAPSHOT_VERSION = 2
READABLE_VERSIONS = (1, 2)
JOURNAL_SUFFIX = ".journal"
#: Fewest journal records before a snapshot is rewritten: small states are not rewritten every change.
COMPACT_MIN_RECORDS = 10_000


class World(Protocol):
    """What the state file keeps: the emulator's sessions, outbox and unregistered numbers."""

    sessions: dict[str, Session]
    outbox: list[Message]
    unregistered: set[str]


class NoStateFile:
    """Where the emulator's changes go without ``--state-file``: nowhere."""

    def open(self) -> None:
        """Load what was stored; nothing here."""

    def session_changed(self, session: Session) -> None:
        """Keep a new or changed session (not its queue). :param session: The session."""

    def session_deleted(self, session: Session) -> None:
        """Forget a session and its queue. :param session: The deleted session."""

    def message_queued(self, message: Message) -> None:
        """Keep a message added to its session's queue. :param message: The message."""

    def message_delivered(self, message: Message) -> None:
        """Move a message to the outbox, out of its session's queue. :param message: The message."""

    def numbers_unregistered(self, numbers: Iterable[str]) -> None:
        """Keep numbers marked as not on WhatsApp. :param numbers: The numbers added."""

    def compact(self) -> None:
        """Write everything to a new snapshot."""

    def close(self) -> None:
        """Write the last snapshot and let go of the files."""


def open_state(path: Path | None, world: World) -> NoStateFile:
    """
    Load what ``--state-file`` kept into the world, and return where its changes go from now on.

    :param path: The ``--state-file``; ``None`` keeps everything in memory.
    :param world: The emulated service's sessions, outbox and unregistered numbers, empty so far.
    :raises RuntimeError: The file cannot be read or written; the message says which and why.
    """
    store = NoStateFile() if path is None else StateFile(path, world)
    store.open()
    return store


class StateFile(NoStateFile):
    """
    A snapshot file and its journal, kept in step with an emulator's world.

    :param path: The snapshot, as given to ``--state-file``; the journal is beside it.
    :param world: The emulator whose sessions, outbox and numbers are kept.
    """

    def __init__(self, path: Path, world: World) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + JOURNAL_SUFFIX)
        self.world = world
        self._journal: int | None = None
        self._seq = 0
        self._since_snapshot = 0
        self._in_snapshot = 0

    # Start-up -------------------------------------------------------------------------------------

    def open(self) -> None:
        """
        Load the snapshot and replay the journal into the world, then fold the journal in.

        :raises RuntimeError: A file cannot be read or written; the message says which and why.
        """
        self._seq = self._replay_journal(self._load_snapshot())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            # Also drops a torn last line, which would otherwise end up between whole ones.
            self.compact()
        except OSError as exc:
            raise RuntimeError(f"Cannot write emulator state file {self.path}: {exc!r}") from exc

    def _load_snapshot(self) -> int:
        """Read the snapshot into the world; return the last journal record it holds."""
        if not self.path.exists():
            return 0
        world = self.world
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or state.get("version") not in READABLE_VERSIONS:
                raise ValueError(
                    f"not an emulator state of version {' or '.join(map(str, READABLE_VERSIONS))}"
                )
            for raw in state["sessions"]:
                session = _session(raw)
                session.queue = deque(Message(**m) for m in raw["queue"])
                world.sessions[session.session_id] = session
            world.outbox.extend(Message(**m) for m in state["outbox"])
            world.unregistered.update(state["unregistered"])
            seq = state.get("journalSeq", 0)
            if not isinstance(seq, int):
                raise TypeError(f"journalSeq must be a number, got {seq!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(
                f"Cannot read emulator state file {self.path}: {exc!r}; move it away to start empty"
            ) from exc
        return seq

    def _replay_journal(self, snapshot_seq: int) -> int:
        """Apply the journal records the snapshot does not hold yet; return the last record's number."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return snapshot_seq
        except OSError as exc:
            raise RuntimeError(f"Cannot read emulator state journal {self.journal_path}: {exc!r}") from exc
        lines = data.split(b"\n")
        torn = lines.pop()  # empty when the journal ends with a newline, as every whole write does
        last = snapshot_seq
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                seq = record["seq"]
                if seq > snapshot_seq:
                    self._apply(record)
                last = max(last, seq)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RuntimeError(
                    f"Cannot read emulator state journal {self.journal_path} line {number}: {exc!r}; "
                    "move it away to start from the state file alone"
                ) from exc
        if torn:
            log.warning(
                "Ignored a torn last line in the emulator state journal %s (%d bytes): a write cut off "
                "by a crash; the request that made it was never answered",
                self.journal_path,
                len(torn),
            )
        return last

    def _apply(self, record: Mapping[str, Any]) -> None:
        """Redo one journal record on the world."""
        world = self.world
        op = record["op"]
        if op == "session":
            session = _session(record["session"])
            previous = world.sessions.get(session.session_id)
            if previous is not None:
                session.queue = previous.queue
            world.sessions[session.session_id] = session
        elif op == "deleted":
            world.sessions.pop(record["sessionId"], None)
        elif op == "queued":
            message = Message(**record["message"])
            world.sessions[message.session_id].queue.append(message)
        elif op == "delivered":
            message = Message(**record["message"])
            owner = world.sessions.get(message.session_id)
            if owner is not None:
                _remove(owner.queue, message.message_id)
                owner.last_active_at = message.delivered_at
            world.outbox.append(message)
        elif op == "unregistered":
            world.unregistered.update(record["numbers"])
        else:
            raise ValueError(f"unknown journal record {op!r}")

    def _remove_leftovers(self) -> None:
        """Delete the temp files of snapshot writes that a kill interrupted."""
        # tempfile's names: the prefix, 8 random characters, our suffix (older emulators wrote none).
        pattern = re.compile(rf"\.{re.escape(self.path.name)}\.[a-z0-9_]{{8}}(\.tmp)?")
        for entry in self.path.parent.iterdir():
            if pattern.fullmatch(entry.name) and entry.is_file():
                entry.unlink()
                log.info("Removed %s, left behind by an interrupted state file write", entry)

    # Changes --------------------------------------------------------------------------------------

    def session_changed(self, session: Session) -> None:
        """Keep a new or changed session (not its queue). :param session: The session."""
        self._append({"op": "session", "session": session.to_record()})

    def session_deleted(self, session: Session) -> None:
        """Forget a session and its queue. :param session: The deleted session."""
        self._append({"op": "deleted", "sessionId": session.session_id})

    def message_queued(self, message: Message) -> None:
        """Keep a message added to its session's queue. :param message: The message."""
        self._append({"op": "queued", "message": message.to_record()})

    def message_delivered(self, message: Message) -> None:
        """Move a message to the outbox, out of its session's queue. :param message: The message."""
        self._append({"op": "delivered", "message": message.to_record()})

    def numbers_unregistered(self, numbers: Iterable[str]) -> None:
        """Keep numbers marked as not on WhatsApp. :param numbers: The numbers added."""
        self._append({"op": "unregistered", "numbers": sorted(numbers)})

    def _append(self, record: dict[str, Any]) -> None:
        assert self._journal is not None, "the state file is not open"
        self._seq += 1
        data = memoryview((json.dumps({"seq": self._seq, **record}) + "\n").encode())
        while data:
            data = data[os.write(self._journal, data) :]
        self._since_snapshot += 1
        if self._since_snapshot >= max(COMPACT_MIN_RECORDS, self._in_snapshot):
            self.compact()

    # Snapshots ------------------------------------------------------------------------------------

    def compact(self) -> None:
        """Write everything to a new snapshot, then empty the journal it now holds."""
        assert self._journal is not None, "the state file is not open"
        world = self.world
        sessions = [
            {**session.to_record(), "queue": [m.to_record() for m in session.queue]}
            for session in world.sessions.values()
        ]
        state = {
            "version": SNAPSHOT_VERSION,
            "journalSeq": self._seq,
            "sessions": sessions,
            "outbox": [m.to_record() for m in world.outbox],
            "unregistered": sorted(world.unregistered),
        }
        write_atomically(self.path, json.dumps(state).encode())
        os.ftruncate(self._journal, 0)  # O_APPEND: the next record goes to the new end, 0
        self._since_snapshot = 0
        self._in_snapshot = (
            len(sessions)
            + sum(len(s["queue"]) for s in sessions)
            + len(world.outbox)
            + len(world.unregistered)
        )

    def close(self) -> None:
        """Write the last snapshot and close the journal."""
        if self._journal is None:
            return
        try:
            self.compact()
        finally:
            os.close(self._journal)
            self._journal = None


def write_atomically(path: Path, data: bytes) -> None:
    """
    Replace a file's content so that a crash leaves either the old content or the new, never a mix.

    :param path: The file.
    :param data: Its new content.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # the content is on disk before the name points at it
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in a directory durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not fsync directories
    finally:
        os.close(fd)


def _session(record: Mapping[str, Any]) -> Session:
    session = Session.from_record(record)
    if session.status not in STATUSES:
        raise ValueError(f"session {session.session_id!r} has an unknown status {session.status!r}")
    return session


def _remove(queue: deque[Message], message_id: str) -> None:
    """Take a delivered message out of its queue: the head, unless the journal says otherwise."""
    if queue and queue[0].message_id == message_id:
        queue.popleft()
        return
    for message in queue:
        if message.message_id == message_id:
            queue.remove(message)
            return
