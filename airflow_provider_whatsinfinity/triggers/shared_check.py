"""
One check-session request per session per interval, shared by every trigger in a triggerer waiting on it.

A triggerer runs all its triggers in one event loop. A hundred deferred session-ready sensors on one
session would otherwise ask the service the same question a hundred times per poke interval; here
the first asker sends the request and the others await its answer, or reuse it while it is fresh
enough for them.

Not Airflow 3.3's shared trigger streams (``BaseEventTrigger.shared_stream_key``): those serve only
event triggers of asset watchers, run one poll loop per group at one interval, and do not exist
before 3.3. This per-process cache works for the deferrable sensor's trigger on Airflow 3.0 to 3.3.

The rules, each tested in ``tests/triggers/test_shared_check.py``:

- **Who shares.** Results are keyed by :class:`CheckKey`: the base URL, the session ID, a salted
  digest of the API key (never the key itself) and the client's timeout and retry settings. Two keys
  for one session never share an answer: a wrong key gets its own 401.
- **How fresh.** An asker with ``max_age`` (a trigger passes its ``poke_interval``) reuses the answer
  of a request sent less than ``max_age`` seconds before it asked, or joins such a request still in
  flight; otherwise it sends a new one, which the next askers then share. Age counts from when the
  request was sent, so an answer is never older than one the asker would have got by asking itself.
- **When to ask again.** The answer says when its request was sent (:class:`CheckAnswer`): a trigger
  asks again when the answer turns ``max_age`` old, not ``max_age`` after it got it. So a trigger
  never holds a view older than its interval, a session becoming ready is seen within one interval
  (plus a request) as before, and the triggers of a session fall into step: one request per interval.
- **No herd.** Askers who find a fresh request in flight await it: one request, however many wait.
- **Errors.** A failed request's error reaches every asker who awaited that request, each of which
  raises it; it is never handed to a later asker, who sends a new request.
- **Cancellation.** An asker cancelled (a trigger cancelled, or out of time) stops waiting; the
  request goes on for the others, and is cancelled when nobody waits for it any more.
- **Event loops.** Each event loop has a cache of its own (:meth:`SessionCheckCache.of_running_loop`):
  a new loop, after a triggerer restarts its loop or in a test's next ``asyncio.run``, never awaits a
  request of a loop that is gone; the caches of closed loops are dropped.
- **Memory.** A trigger subscribes to its key for as long as it runs (:class:`SharedSessionCheck`);
  when the last one leaves, the entry, its answer and its connection pool go.

The requests go through a client of the cache's own, a copy of the first subscriber's: a trigger that
ends closes its hook's client, which must not cut off a request others are awaiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from airflow_provider_whatsinfinity.validation import redact_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient
    from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
    from airflow_provider_whatsinfinity.models import SessionStatus
    from airflow_provider_whatsinfinity.retries import RetrySettings

#: Share check-session requests between triggers of this process. The benchmark turns it off to
#: measure the difference (``bench/deferred_sensors.py``); it is not a setting for deployments.
enabled = True

# Digests are salted per process: one found in a memory dump cannot be matched against a guessed key
# without the salt, nor against a digest from another process.
_SALT = secrets.token_bytes(32)


def key_digest(api_key: str) -> str:
    """
    Return the salted SHA-256 digest that stands for an API key in :class:`CheckKey`.

    :param api_key: The key.
    """
    return hmac.new(_SALT, api_key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CheckKey:
    """
    Which triggers may share a check-session answer: same service, session, key and client settings.

    Its ``repr`` shows the base URL without credentials and a few characters of the key's digest.

    :param base_url: The client's base URL.
    :param session_id: The session checked.
    :param api_key_digest: :func:`key_digest` of the key sent.
    :param timeout: The client's timeout per request.
    :param retry: The client's retry settings.
    """

    base_url: str
    session_id: str
    api_key_digest: str
    timeout: float
    retry: RetrySettings

    @classmethod
    def of(cls, client: AsyncWhatsInfinityClient) -> CheckKey:
        """
        Return the key of the requests ``client`` would send.

        :param client: A trigger's client.
        """
        # The client never shows its key; only its digest leaves this line.
        digest = key_digest(client._api_key)
        return cls(client.base_url, client.session_id, digest, client.timeout, client.retry)

    def __repr__(self) -> str:
        return (
            f"CheckKey(base_url={redact_url(self.base_url)!r}, session_id={self.session_id!r}, "
            f"api_key_digest={self.api_key_digest[:8]!r}...)"
        )


class CheckAnswer(NamedTuple):
    """
    A session's status and when the request that got it was sent, maybe by another trigger.

    :param status: The status.
    :param sent: ``time.monotonic()`` when the request was sent.
    """

    status: SessionStatus
    sent: float

    def fresh_for(self, max_age: float) -> float:
        """
        Return the seconds until the answer is ``max_age`` old (0 when it already is).

        :param max_age: How old, in seconds, an answer may be.
        """
        return max(0.0, self.sent + max_age - time.monotonic())


@dataclass(eq=False)
class _Request:
    """One check-session request: when it was sent, its task, and how many askers await it."""

    sent: float
    task: asyncio.Task[SessionStatus]
    waiters: int = 0

    def serves(self, asked: float, max_age: float) -> bool:
        """Whether an asker at ``asked`` with ``max_age`` may take this request's answer."""
        if asked - self.sent >= max_age:
            return False
        task = self.task
        return not task.done() or (not task.cancelled() and task.exception() is None)


@dataclass(eq=False)
class _Entry:
    """What the cache holds for one key: its own client, its subscribers, the latest request."""

    client: AsyncWhatsInfinityClient
    subscribers: int = 0
    latest: _Request | None = field(default=None)


# One cache per event loop, dropped with its loop (and, as a loop's tasks and pools refer back to it,
# also as soon as the loop is seen closed).
_caches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionCheckCache] = weakref.WeakKeyDictionary()


class SessionCheckCache:
    """
    The shared check-session requests of one event loop, by :class:`CheckKey`.

    Get it with :meth:`of_running_loop`; triggers use it through :class:`SharedSessionCheck`.

    :param loop: The event loop whose requests it holds.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the cache is the loop's value in _caches, and must not keep its key alive.
        self._loop = weakref.ref(loop)
        self._entries: dict[CheckKey, _Entry] = {}

    @classmethod
    def of_running_loop(cls) -> SessionCheckCache:
        """Return the running event loop's cache, created on first use; forget those of closed loops."""
        loop = asyncio.get_running_loop()
        cache = _caches.get(loop)
        if cache is None:
            for old in [old for old in list(_caches) if old.is_closed()]:
                _caches.pop(old, None)
            cache = _caches[loop] = cls(loop)
        return cache

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"SessionCheckCache({list(self._entries)!r})"

    def __iter__(self) -> Iterator[CheckKey]:
        """Iterate over the keys that have subscribers."""
        return iter(list(self._entries))

    def subscribe(self, key: CheckKey, client: AsyncWhatsInfinityClient) -> None:
        """
        Count one more trigger using ``key``; the first one's client is copied for the entry's requests.

        :param key: :meth:`CheckKey.of` the client.
        :param client: The trigger's client.
        """
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(client.copy())
        entry.subscribers += 1

    async def unsubscribe(self, key: CheckKey) -> None:
        """
        Count one trigger fewer using ``key``; the last one out drops the entry and closes its client.

        :param key: The key it subscribed with.
        """
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.subscribers -= 1
        if entry.subscribers > 0:
            return
        del self._entries[key]
        latest, entry.latest = entry.latest, None
        if asyncio.get_running_loop() is not self._loop():
            return  # another loop's: nothing of it can be awaited or closed from here
        if latest is not None and not latest.task.done():
            latest.task.cancel()
            await asyncio.wait({latest.task})
        await entry.client.aclose()

    async def check(self, key: CheckKey, max_age: float) -> CheckAnswer:
        """
        Return the session's status from a request sent less than ``max_age`` seconds ago, or a new one.

        Raises what the request raised (each awaiting caller raises it), and ``RuntimeError`` when
        called from another event loop than the cache's.

        :param key: A key subscribed with :meth:`subscribe`.
        :param max_age: How old, in seconds from when it was sent, a shared answer may be.
        """
        if asyncio.get_running_loop() is not self._loop():
            raise RuntimeError("This SessionCheckCache belongs to another event loop; use of_running_loop()")
        entry = self._entries[key]
        asked = time.monotonic()
        request = entry.latest
        if request is None or not request.serves(asked, max_age):
            request = self._send(key, entry, asked)
        request.waiters += 1
        try:
            # Shielded: one asker cancelled must not cancel the request the others await.
            return CheckAnswer(await asyncio.shield(request.task), request.sent)
        finally:
            request.waiters -= 1
            if request.waiters == 0 and not request.task.done():
                # Everyone who wanted it gave up: so does the request (a read, nothing to undo).
                request.task.cancel()
                if entry.latest is request:
                    entry.latest = None

    def _send(self, key: CheckKey, entry: _Entry, asked: float) -> _Request:
        """Start a request on the entry's client; it becomes the one later askers may share."""
        request = _Request(asked, asyncio.get_running_loop().create_task(entry.client.check_session()))
        request.task.add_done_callback(lambda task: self._settled(key, request))
        entry.latest = request
        return request

    def _settled(self, key: CheckKey, request: _Request) -> None:
        """Forget a request that failed, so that its error reaches no one who asks later."""
        task = request.task
        failed = task.cancelled() or task.exception() is not None  # also marks the error as seen
        entry = self._entries.get(key)
        if failed and entry is not None and entry.latest is request:
            entry.latest = None


class SharedSessionCheck:
    """
    A trigger's way to check its session through the running loop's :class:`SessionCheckCache`.

    .. code-block:: python

        check = SharedSessionCheck(hook)
        try:
            answer = await check.status(max_age=poke_interval)
        finally:
            await check.aclose()

    With :data:`enabled` off, or for a client with a transport of its own, it asks the hook's client
    directly, as the trigger did before.

    :param hook: The trigger's hook; its client gives the session, key and settings.
    """

    def __init__(self, hook: WhatsInfinityHook) -> None:
        self.hook = hook
        self._subscribed: tuple[SessionCheckCache, CheckKey] | None = None

    async def status(self, max_age: float) -> CheckAnswer:
        """
        Return the session's status, from a shared request sent less than ``max_age`` seconds ago.

        :param max_age: How old, in seconds, an answer may be: the trigger's poke interval.
        """
        client = await self.hook.get_async_client()
        if not enabled or client._transport is not None:
            sent = time.monotonic()
            return CheckAnswer(await client.check_session(), sent)
        cache = SessionCheckCache.of_running_loop()
        key = CheckKey.of(client)  # again each time: a rotated key is another key
        subscribed = self._subscribed
        if subscribed is None or subscribed[0] is not cache or subscribed[1] != key:
            await self.aclose()
            cache.subscribe(key, client)
            self._subscribed = (cache, key)
        return await cache.check(key, max_age)

    async def aclose(self) -> None:
        """Stop using the shared check; the last trigger out of a session drops its entry."""
        subscribed, self._subscribed = self._subscribed, None
        if subscribed is not None:
            cache, key = subscribed
            await cache.unsubscribe(key)
