"""
A notifier that sends Airflow alerts to WhatsApp, and the postbox where its alerts wait out a rate limit.

An alert is never lost and never sent twice:

- It always fits the API's 65000 characters: what the template inserts (the exception, the reason)
  is cut to fit, saying so, and a message still too long is cut as a last resort (:func:`clip_text`).
- Each alert to each recipient is a :class:`Letter` that ends delivered (alone or in a digest), or
  logged at ERROR level as not delivered, or as maybe delivered when its outcome was lost. A letter
  whose outcome is unknown is never sent again.
- Alerts that meet the same rate limit in one process wait together in the :class:`AlertPostbox` and
  go out as one digest per recipient when the rate window opens again.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseNotifier

from airflow_provider_whatsinfinity._compat import redact
from airflow_provider_whatsinfinity.exceptions import (
    OutcomeUnknownError,
    RateLimitedError,
    ValidationError,
    WhatsInfinityError,
)
from airflow_provider_whatsinfinity.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_whatsinfinity.operators.whatsinfinity import recipients_of
from airflow_provider_whatsinfinity.spec import MAX_MESSAGE_LENGTH, text_length
from airflow_provider_whatsinfinity.validation import normalize_phone

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Hashable, Iterator, Sequence

    import jinja2
    from airflow.sdk import Context

    from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient, WhatsInfinityClient
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


def describe_alert(context: Mapping[str, Any]) -> str:
    """
    Name an alert for the logs: its DAG, task and try, and run, as far as the context knows them.

    :param context: The callback's context (a deadline alert's is a plain dict of plain values).
    """
    dag, dag_run, ti = context.get("dag"), context.get("dag_run"), context.get("ti")
    dag_id = _field(dag, "dag_id") or _field(dag_run, "dag_id")
    run_id = context.get("run_id") or _field(dag_run, "run_id")
    parts = [f"DAG {dag_id}"] if dag_id else []
    if task_id := _field(ti, "task_id"):
        try_number = _field(ti, "try_number")
        parts.append(f"task {task_id}" + (f" (try {try_number})" if try_number else ""))
    if run_id:
        parts.append(f"run {run_id}")
    return ", ".join(parts) or "an Airflow alert without a DAG in its context"


def _field(thing: Any, name: str) -> Any:
    return thing.get(name) if isinstance(thing, Mapping) else getattr(thing, name, None)


# The postbox ---------------------------------------------------------------------------------------


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


def _send_alone(letter: Letter) -> Steps:
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


def _drive(steps: Steps, send: Callable[[Send], SendResult]) -> None:
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


async def _adrive(steps: Steps, send: Callable[[Send], Awaitable[SendResult]]) -> None:
    """
    Asyncio twin of :func:`_drive`.

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


# The notifier ------------------------------------------------------------------------------------


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

    Every recipient is tried, even when an earlier one failed; the first error is raised at the end,
    and every alert not delivered is logged at ERROR level with its DAG, task, run and recipient.

    :param to: A phone number with country code, or a list of them. Templated.
    :param message: The message, templated with the callback's context (``dag``, ``ti``,
        ``run_id``, ``exception``, ...). The default names the DAG, task, try, run and exception.
        A message longer than the API's 65000 characters has what it inserts cut to fit (the
        exception, say), or else its end, with a note saying so.
    :param typing: Show a typing indicator briefly before the message.
    :param whatsinfinity_conn_id: The WhatsInfinity connection to use. Templated.
    :param max_rate_limit_wait: Most seconds an alert waits for the session's rate window before
        it is given up (and logged); default the connection's ``max_rate_limit_wait`` (120 s). A
        callback that waits holds its worker slot meanwhile.
    :param digest: Let alerts that wait for the same rate window in this process go out as one
        message per recipient (see :class:`AlertPostbox`); ``False`` sends each alert alone.
    """

    template_fields: Sequence[str] = ("to", "message", "whatsinfinity_conn_id")

    def __init__(
        self,
        *,
        to: str | int | list[str | int],
        message: str = DEFAULT_MESSAGE,
        typing: bool = False,
        whatsinfinity_conn_id: str = DEFAULT_CONN_ID,
        max_rate_limit_wait: float | None = None,
        digest: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_rate_limit_wait is not None and (
            isinstance(max_rate_limit_wait, bool)
            or not isinstance(max_rate_limit_wait, (int, float))
            or not 0 <= max_rate_limit_wait < math.inf
        ):
            raise ValidationError(
                f"max_rate_limit_wait must be a number of seconds, 0 or more, got {max_rate_limit_wait!r}"
            )
        self.to = to
        self.message = message
        self.typing = typing
        self.whatsinfinity_conn_id = whatsinfinity_conn_id
        self.max_rate_limit_wait = max_rate_limit_wait
        self.digest = digest
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
        """Return a hook on the connection this alert was rendered with, with this alert's budget."""
        from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook

        return WhatsInfinityHook(
            whatsinfinity_conn_id=self.whatsinfinity_conn_id, max_rate_limit_wait=self.max_rate_limit_wait
        )

    def notify(self, context: Context) -> None:
        """Send the rendered message to every recipient."""
        letters, hook = self._letters(context), self.hook()
        try:
            client: WhatsInfinityClient | Exception
            try:
                client = hook.get_conn()
            except Exception as error:
                client = error
            for steps in self._deliveries(letters, client):
                _drive(steps, lambda step: hook.send_text(step.to, step.text, typing=step.typing))
        finally:
            hook.close()
            self._log_outcomes(letters)
        self._raise_first_error(letters)

    async def async_notify(self, context: Context) -> None:
        """Send the rendered message to every recipient, from the triggerer."""
        letters, hook = self._letters(context), self.hook()
        try:
            client: AsyncWhatsInfinityClient | Exception
            try:
                client = await hook.get_async_client()
            except Exception as error:
                client = error
            for steps in self._deliveries(letters, client):
                await _adrive(steps, lambda step: hook.asend_text(step.to, step.text, typing=step.typing))
        finally:
            await hook.aclose()
            self._log_outcomes(letters)
        self._raise_first_error(letters)

    def _letters(self, context: Context) -> list[Letter]:
        """Return this alert's letters, one per recipient; a malformed number is settled at once."""
        alert = describe_alert(context)
        try:
            recipients = recipients_of(self.to)[0]
        except Exception as error:
            self.log.error("WhatsApp alert for %s NOT sent: %s", alert, error)
            raise
        text = self.render_message()
        letters = []
        for recipient in recipients:
            letter = Letter(alert, recipient, text, self.typing)
            try:
                letter.digits = normalize_phone(recipient)
            except ValidationError as error:
                letter.outcome = error
            letters.append(letter)
        return letters

    def _deliveries(
        self, letters: list[Letter], client: WhatsInfinityClient | AsyncWhatsInfinityClient | Exception
    ) -> Iterator[Steps]:
        """Yield each letter's delivery, one after the other: through the postbox, or alone."""
        if isinstance(client, Exception):
            for letter in letters:
                letter.outcome = letter.outcome or client
            return
        budget = client.retry.max_rate_limit_wait
        if self.digest:
            # The postbox waits out 429s itself, with each alert's budget, so that alerts held by the
            # same window can leave together: the client gives a 429 back at once.
            client.retry = replace(client.retry, max_rate_limit_wait=0)
        window = (self.whatsinfinity_conn_id, client.base_url, client.session_id)
        for letter in letters:
            if letter.outcome is None:
                letter.budget = budget
                yield POSTBOX.deliver(letter, window) if self.digest else _send_alone(letter)

    def _log_outcomes(self, letters: list[Letter]) -> None:
        """Log what became of each letter: one INFO line when delivered, one ERROR line otherwise."""
        for letter in letters:
            outcome = letter.outcome
            how = f" in a digest of {letter.carried_with} alerts" if letter.carried_with > 1 else ""
            if outcome is None:
                self.log.error(
                    "WhatsApp alert for %s NOT sent to %s: the notifier stopped before its turn",
                    letter.alert,
                    letter.to,
                )
            elif isinstance(outcome, OutcomeUnknownError):
                self.log.error(
                    "WhatsApp alert for %s to %s may or may not have gone out%s, so it is not sent again: %s",
                    letter.alert,
                    letter.to,
                    how,
                    outcome,
                )
            elif isinstance(outcome, Exception):
                self.log.error(
                    "WhatsApp alert for %s NOT sent to %s%s: %s", letter.alert, letter.to, how, outcome
                )
            else:
                self.log.info(
                    "WhatsApp alert for %s sent to %s%s (messageId %s)",
                    letter.alert,
                    outcome.to,
                    how,
                    outcome.message_id,
                )

    @staticmethod
    def _raise_first_error(letters: list[Letter]) -> None:
        errors = [letter.outcome for letter in letters if isinstance(letter.outcome, Exception)]
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
