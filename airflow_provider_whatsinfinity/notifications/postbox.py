"""
The postbox where the alerts of one process wait out a session's rate limit, and leave together.

Each alert to each recipient is a :class:`Letter` that ends delivered (alone or in a digest), or
settled as not delivered, or as maybe delivered when its outcome was lost; a letter whose outcome is
unknown is never sent again. A delivery is a generator of steps (:class:`Send`, :class:`Pause`) run
by a sync or an async driver, the same idea as the client's retry generator and httpx's auth flows.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_whatsinfinity.exceptions import (
    OutcomeUnknownError,
    RateLimitedError,
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Hashable, Sequence

    from airflow_provider_whatsinfinity.models import SendResult


@dataclass(eq=False)
class Letter:
    """
    One alert on its way to one recipient, and what became of it.

    :param alert: Names the alert in the logs: its DAG, task, try and run.
    :param recipient: The number as written.
    :param text: The message: rendered, redacted and cut to fit.
    :param typing: Show a typing indicator before it.
    :param budget: Most seconds it may wait for a rate window to open.
    """

    alert: str
    recipient: str | int
    text: str
    typing: bool = False
    budget: float = 0.0
    #: The recipient's digits, once checked.
    digits: str = ""
    #: The send's result (shared by every letter of a digest) or its error; ``None`` while undecided.
    outcome: SendResult | Exception | None = None
    #: How many alerts the message that carried it held: 1 when it went alone.
    carried_with: int = 1
    order: int = 0
    deadline: float | None = None

    @property
    def to(self) -> str:
        """The recipient as the logs show it: its digits when they are known."""
        return self.digits or str(self.recipient)


@dataclass(frozen=True)
class Send:
    """A step of a delivery: send ``text`` to ``to``, and send back the result or the error."""

    to: str | int
    text: str
    typing: bool


@dataclass(frozen=True)
class Pause:
    """A step of a delivery: wait this many seconds, then send back ``None``."""

    seconds: float


if TYPE_CHECKING:
    #: What a delivery's driver sends back after a step.
    Outcome = SendResult | Exception | None
    #: A delivery: it yields steps and is sent back their outcomes.
    Steps = Generator[Send | Pause, Outcome, None]


@dataclass
class _Window:
    """What one process knows of one session's rate window, and the letters waiting for it."""

    opens_at: float = 0.0
    #: Letters waiting for the window, by recipient, oldest first.
    held: dict[str, list[Letter]] = field(default_factory=dict)
    #: Recipients whose digest is on its way.
    carrying: set[str] = field(default_factory=set)


def digest_text(letters: Sequence[Letter]) -> str:
    """
    Return the message that carries these letters: the text itself for one, a numbered digest for more.

    :param letters: The letters, oldest first.
    """
    if len(letters) == 1:
        return letters[0].text
    count = len(letters)
    items = (_item_head(index, count) + letter.text for index, letter in enumerate(letters, 1))
    return _DIGEST_SEPARATOR.join([_digest_head(count), *items])


_DIGEST_SEPARATOR = "\n\n"


def _digest_head(count: int) -> str:
    return f"{count} Airflow alerts, held back by the WhatsApp rate limit and sent together:"


def _item_head(index: int, count: int) -> str:
    return f"[{index}/{count}] "


def _fitting(held: Sequence[Letter]) -> int:
    """Return how many of the oldest held letters one message can carry (at least one)."""
    lengths = [text_length(letter.text) for letter in held]
    count = 1
    while count < len(held):
        # Counted as digest_text writes it, without building the text.
        total = text_length(_digest_head(count + 1)) + sum(
            len(_DIGEST_SEPARATOR) + len(_item_head(index, count + 1)) + lengths[index - 1]
            for index in range(1, count + 2)
        )
        if total > MAX_MESSAGE_LENGTH:
            break
        count += 1
    return count


class AlertPostbox:
    """
    Where the alerts of one process wait for a session's rate window to open, and then leave together.

    A delivery is a generator of steps (:class:`Send`, :class:`Pause`) that a driver runs, sync or
    async, as the client's retries are; the postbox's own state changes only under one lock. Its rules:

    - A letter goes alone at once, unless its session's window is known to be closed or letters to its
      recipient are already waiting: then it waits with them.
    - Only a 429 makes a letter wait again: the server refused it, so it certainly did not go out. Any
      other answer settles every letter the message carried, an unknown outcome included: such a
      letter is never sent again.
    - When the window opens, the first waiting letter to see it carries every letter waiting for its
      recipient that fits in one message, oldest first; the others learn the outcome from it.
    - A letter gives up, and says why, when the window opens later than its budget allows.
    - A delivery stopped midway (a cancelled task) settles what it held: the letters it was sending
      as outcome unknown, its own letter, still waiting, as not sent.

    Letters are folded only within one process and one connection: the triggerer's deadline alerts
    and callbacks run from threads share a postbox; task processes do not.
    """

    #: Seconds between looks at a letter that another delivery is carrying.
    poll = 0.02

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[Hashable, _Window] = {}
        self._order = itertools.count()

    def deliver(self, letter: Letter, window: Hashable) -> Steps:
        """
        Deliver one letter: alone, in a digest it carries, or in one that another letter carries.

        :param letter: The letter; its ``outcome`` is set when the generator ends.
        :param window: Names the session's rate window, such as ``(conn_id, base_url, session_id)``.
        """
        with self._lock:
            state = self._windows.setdefault(window, _Window())
            letter.order = next(self._order)
            now = time.monotonic()
            if state.opens_at <= now and not state.held.get(letter.digits):
                batch, leading = [letter], False
            else:
                batch, leading = [], False
                self._hold(state, letter, now)
        try:
            while letter.outcome is None:
                if not batch:
                    with self._lock:
                        pause, batch, leading = self._wait_or_lead(state, letter)
                    if pause:
                        yield Pause(pause)
                    continue
                sent: Outcome = None
                try:
                    sent = yield Send(letter.recipient, digest_text(batch), any(m.typing for m in batch))
                finally:
                    with self._lock:
                        self._settle(state, batch, leading, sent)
                    batch = []
        except GeneratorExit:
            with self._lock:
                if letter in state.held.get(letter.digits, []):
                    self._unhold(state, letter)
                    letter.outcome = WhatsInfinityError(
                        f"send to {letter.to}: stopped while waiting for the rate limit; nothing was sent"
                    )
                elif letter.outcome is None:
                    letter.outcome = OutcomeUnknownError(
                        f"send to {letter.to}: stopped while another alert's digest was carrying it; "
                        "it may or may not have gone out"
                    )
            raise

    def _hold(self, state: _Window, letter: Letter, now: float) -> None:
        if letter.deadline is None:
            letter.deadline = now + letter.budget
        held = state.held.setdefault(letter.digits, [])
        held.append(letter)
        held.sort(key=lambda waiting: waiting.order)

    def _unhold(self, state: _Window, *letters: Letter) -> None:
        held = state.held[letters[0].digits]
        for letter in letters:
            held.remove(letter)
        if not held:
            del state.held[letters[0].digits]

    def _wait_or_lead(self, state: _Window, letter: Letter) -> tuple[float, list[Letter], bool]:
        """Return how long to wait, or the letters to carry now; or settle the letter as given up."""
        now = time.monotonic()
        held = state.held.get(letter.digits, [])
        if letter.outcome is not None:
            return 0.0, [], False
        if letter not in held:  # on its way in another letter's digest
            return self.poll, [], False
        assert letter.deadline is not None
        if state.opens_at <= now and letter.digits not in state.carrying:
            batch = held[: _fitting(held)]
            self._unhold(state, *batch)
            state.carrying.add(letter.digits)
            return 0.0, batch, True
        if state.opens_at > letter.deadline or now >= letter.deadline:
            self._unhold(state, letter)
            still = (
                f"the session's rate window opens again in {state.opens_at - now:.1f} s"
                if state.opens_at > now
                else "a digest to the same number is still on its way"
            )
            letter.outcome = RateLimitedError(
                f"send to {letter.to}: rate limited, and {still}: waiting longer would exceed this "
                f"alert's max_rate_limit_wait ({letter.budget:g} s); nothing was sent",
                retry_after=math.ceil(max(state.opens_at - now, 0)),
                status_code=429,
            )
            return 0.0, [], False
        until = state.opens_at if state.opens_at > now else now + self.poll
        return min(until, letter.deadline) - now, [], False

    def _settle(self, state: _Window, batch: list[Letter], leading: bool, sent: Outcome) -> None:
        """Record what became of the letters a message carried."""
        if leading:
            state.carrying.discard(batch[0].digits)
        if isinstance(sent, RateLimitedError):
            now = time.monotonic()
            state.opens_at = max(state.opens_at, now + (sent.retry_after or 1.0))
            for letter in batch:
                self._hold(state, letter, now)
            return
        if sent is None:
            sent = OutcomeUnknownError(
                f"send to {batch[0].to}: stopped while the message was on its way; it may or may not "
                "have gone out, so it is not sent again"
            )
        for letter in batch:
            letter.outcome, letter.carried_with = sent, len(batch)


#: The process's postbox, shared by every notifier in it.
POSTBOX = AlertPostbox()


def send_alone(letter: Letter) -> Steps:
    """Deliver a letter by itself; the client waits out 429s within its own budget."""
    sent: Outcome = None
    try:
        sent = yield Send(letter.recipient, letter.text, letter.typing)
    finally:
        if sent is None:
            sent = OutcomeUnknownError(
                f"send to {letter.to}: stopped while the message was on its way; it may or may not "
                "have gone out, so it is not sent again"
            )
        letter.outcome = sent


def drive(steps: Steps, send: Callable[[Send], SendResult]) -> None:
    """
    Run a delivery's steps with blocking I/O.

    :param steps: From :meth:`AlertPostbox.deliver`.
    :param send: Sends one message and returns its result.
    """
    outcome: Outcome = None
    try:
        while True:
            step = steps.send(outcome)
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = send(step)
            except Exception as error:
                outcome = error
    except StopIteration:
        return
    finally:
        steps.close()


async def adrive(steps: Steps, send: Callable[[Send], Awaitable[SendResult]]) -> None:
    """
    Asyncio twin of :func:`drive`.

    :param steps: From :meth:`AlertPostbox.deliver`.
    :param send: Sends one message and returns its result.
    """
    outcome: Outcome = None
    try:
        while True:
            step = steps.send(outcome)
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await send(step)
            except Exception as error:
                outcome = error
    except StopIteration:
        return
    finally:
        steps.close()
