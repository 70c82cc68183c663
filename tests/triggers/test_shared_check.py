"""
The shared session check: triggers in one event loop send one check-session per session per interval.

Against the emulator over HTTP; requests are counted in the emulator's own request log.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import time
import weakref
from typing import Any

import pytest

from airflow_provider_whatsinfinity.hooks.whatsinfinity import WhatsInfinityHook
from airflow_provider_whatsinfinity.retries import RetrySettings
from airflow_provider_whatsinfinity.triggers import shared_check
from airflow_provider_whatsinfinity.triggers.shared_check import CheckKey, SessionCheckCache
from airflow_provider_whatsinfinity.triggers.whatsinfinity import WhatsInfinitySessionReadyTrigger
from tests.common import KEY, SESSION, connection_json

WRONG_KEY = "wrong-key-0123456789"
OTHER_SESSION = "othersession"
OTHER_KEY = "other-session-key-0123456789"


@pytest.fixture
def emulator(whatsinfinity_emulator, monkeypatch):
    """The emulator, with connections ``wi_right`` and ``wi_wrong`` (a wrong key) on the default session
    and ``wi_other`` on another session."""
    url = whatsinfinity_emulator.url
    monkeypatch.setenv("AIRFLOW_CONN_WI_RIGHT", connection_json(url))
    monkeypatch.setenv("AIRFLOW_CONN_WI_WRONG", connection_json(url, password=WRONG_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_WI_OTHER", connection_json(url, OTHER_SESSION, OTHER_KEY))
    return whatsinfinity_emulator


def checks(emulator, session: str = SESSION) -> list[dict[str, Any]]:
    """The check-session requests the emulator saw for a session, oldest first."""
    return emulator.requests(f"/check-session/{session}")


async def first_payload(trigger: WhatsInfinitySessionReadyTrigger) -> dict[str, Any]:
    """Run a trigger as the triggerer does until its event; close it; return the payload."""
    run: Any = trigger.run()  # an async generator, closed as the triggerer closes it
    try:
        event = await run.__anext__()
    finally:
        await run.aclose()
    payload: dict[str, Any] = event.payload
    assert json.loads(json.dumps(payload)) == payload
    return payload


def start(conn_id: str, count: int, poke_interval: float, **kwargs: Any) -> list[asyncio.Task[Any]]:
    """Start ``count`` triggers on a connection, each in its own task, as a triggerer would."""
    return [
        asyncio.create_task(
            first_payload(WhatsInfinitySessionReadyTrigger(conn_id, poke_interval=poke_interval, **kwargs))
        )
        for _ in range(count)
    ]


def test_triggers_on_one_session_send_one_request_per_interval(emulator):
    emulator.create_session(SESSION, KEY)  # waiting for its QR scan

    async def run() -> tuple[int, float, list[tuple[float, dict[str, Any]]]]:
        poke = 0.5
        tasks = start("wi_right", 40, poke)
        await asyncio.sleep(2.0)
        before_link = len(await asyncio.to_thread(checks, emulator))
        linked_at = time.monotonic()
        await asyncio.to_thread(emulator.link, SESSION)
        events = []
        for done in asyncio.as_completed(tasks, timeout=10):
            events.append((time.monotonic(), await done))
        return before_link, linked_at, events

    before_link, linked_at, events = asyncio.run(run())
    # 2 s at one request per 0.5 s interval: 4 or 5 (40 triggers asking alone would send 160).
    assert 3 <= before_link <= 6, before_link
    assert [payload["outcome"] for _, payload in events] == ["ready"] * 40
    # Each trigger still sees the change within its interval (and a request), as when asking alone.
    assert max(when - linked_at for when, _ in events) < 0.5 + 0.5


def test_with_sharing_off_each_trigger_sends_its_own(emulator, monkeypatch):
    # The benchmark's off switch: the triggers behave as before, one request each per interval.
    monkeypatch.setattr(shared_check, "enabled", False)
    emulator.create_session(SESSION, KEY)

    async def run() -> None:
        tasks = start("wi_right", 10, 0.5)
        await asyncio.sleep(1.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    assert len(checks(emulator)) >= 10 * 2


def test_different_keys_never_share_and_an_error_reaches_every_trigger(emulator):
    emulator.create_session(SESSION, KEY, link=True)
    # Each check takes 1 s: every trigger of a key joins the one request in flight.
    emulator.add_fault(f"/check-session/{SESSION}", "delay", seconds=1.0)

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        right = start("wi_right", 5, 30)
        wrong = start("wi_wrong", 5, 30)
        return await asyncio.gather(*right), await asyncio.gather(*wrong)

    right, wrong = asyncio.run(run())
    seen = checks(emulator)
    assert sorted(request["status"] for request in seen) == [200, 401]
    by_status = {request["status"]: request["requestId"] for request in seen}
    assert all(payload["outcome"] == "ready" for payload in right)
    # The one 401, raised in each of its five triggers, none of which took the right key's answer.
    assert [payload["outcome"] for payload in wrong] == ["error"] * 5
    assert {payload["error"]["type"] for payload in wrong} == {"AuthenticationError"}
    assert {payload["error"]["request_id"] for payload in wrong} == {by_status[401]}
    assert WRONG_KEY not in json.dumps(wrong)


def test_a_transient_error_is_not_reused_after_its_request(emulator):
    emulator.create_session(SESSION, KEY, link=True)
    # Fails the first check of all its attempts (the client tries 4 times): a transient error.
    emulator.add_fault("/check-session", "status", status=502, times=4)

    async def run() -> list[dict[str, Any]]:
        return await asyncio.gather(*start("wi_right", 10, 0.3))

    payloads = asyncio.run(run())
    assert [payload["outcome"] for payload in payloads] == ["ready"] * 10
    # Every trigger waited on the failing check, logged it, and asked again one interval later:
    # a new request for all ten, not the error again.
    assert [request["status"] for request in checks(emulator)] == [502] * 4 + [200]


def test_answers_are_reused_only_within_the_askers_interval(emulator):
    emulator.create_session(SESSION, KEY)

    async def run() -> None:
        hook = WhatsInfinityHook("wi_right")
        client = await hook.get_async_client()
        cache = SessionCheckCache.of_running_loop()
        key = CheckKey.of(client)
        cache.subscribe(key, client)
        try:
            first = await cache.check(key, max_age=60)
            assert len(await asyncio.to_thread(checks, emulator)) == 1
            again = await cache.check(key, max_age=60)
            assert again.sent == first.sent  # reused
            await asyncio.sleep(0.3)
            # 0.3 s old: too old for an asker polling every 0.2 s, fine for one polling every 60 s.
            short = await cache.check(key, max_age=0.2)
            assert short.sent > first.sent
            assert len(await asyncio.to_thread(checks, emulator)) == 2
            long = await cache.check(key, max_age=60)
            assert long.sent == short.sent
            await asyncio.to_thread(emulator.link, SESSION)
            stale = await cache.check(key, max_age=60)
            assert (stale.status.status, stale.fresh_for(60) > 59) == ("qr", True)
            fresh = await cache.check(key, max_age=0.0)
            assert fresh.status.is_ready
            assert len(await asyncio.to_thread(checks, emulator)) == 3
        finally:
            await cache.unsubscribe(key)
            await hook.aclose()

    asyncio.run(run())


def test_askers_await_one_request_and_a_cancelled_one_does_not_cancel_it(emulator):
    emulator.create_session(SESSION, KEY, link=True)
    emulator.add_fault(f"/check-session/{SESSION}", "delay", seconds=0.5, times=2)

    async def run() -> None:
        hook = WhatsInfinityHook("wi_right")
        client = await hook.get_async_client()
        cache = SessionCheckCache.of_running_loop()
        key = CheckKey.of(client)
        cache.subscribe(key, client)
        try:
            askers = [asyncio.create_task(cache.check(key, max_age=30)) for _ in range(20)]
            await asyncio.sleep(0.1)
            askers[0].cancel()
            answers = await asyncio.gather(*askers[1:])
            assert askers[0].cancelled()
            assert {answer.sent for answer in answers} == {answers[0].sent}
            assert all(answer.status.is_ready for answer in answers)
            assert len(await asyncio.to_thread(checks, emulator)) == 1
            # When every asker gives up, so does the request; the next asker sends a new one.
            gone = asyncio.create_task(cache.check(key, max_age=0.0))
            await asyncio.sleep(0.1)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
            after = await cache.check(key, max_age=30)
            assert after.sent > answers[0].sent
            assert after.status.is_ready
        finally:
            await cache.unsubscribe(key)
            await hook.aclose()

    asyncio.run(run())
    # Cut off by the client, the cancelled request has no status in the emulator's log.
    assert len(checks(emulator)) == 3


def test_a_new_event_loop_never_awaits_the_old_loops_request(emulator):
    emulator.create_session(SESSION, KEY, link=True)
    emulator.add_fault(f"/check-session/{SESSION}", "delay", seconds=5, times=1)
    old_loop = asyncio.new_event_loop()

    async def leave_one_in_flight() -> tuple[SessionCheckCache, asyncio.Task[Any]]:
        task = asyncio.create_task(first_payload(WhatsInfinitySessionReadyTrigger("wi_right", 60)))
        await asyncio.sleep(0.5)  # its request is in flight, for 5 s
        return SessionCheckCache.of_running_loop(), task

    try:
        old_cache, old_task = old_loop.run_until_complete(leave_one_in_flight())
        assert len(old_cache) == 1
        # The loop stops (a triggerer restarting its loop); a new one runs the same wait.

        async def wait_again() -> tuple[SessionCheckCache, dict[str, Any], float]:
            started = time.monotonic()
            payload = await first_payload(WhatsInfinitySessionReadyTrigger("wi_right", 60))
            return SessionCheckCache.of_running_loop(), payload, time.monotonic() - started

        new_cache, payload, waited = asyncio.run(wait_again())
        assert new_cache is not old_cache
        assert payload["outcome"] == "ready"
        assert waited < 3  # its own request, not the old loop's 5 s one
        assert len(new_cache) == 0
    finally:
        old_task.cancel()
        old_loop.run_until_complete(asyncio.gather(old_task, return_exceptions=True))
        assert len(old_cache) == 0
        old_loop.close()
    assert old_loop not in shared_check._caches or len(shared_check._caches[old_loop]) == 0


def test_a_loops_cache_goes_with_its_loop_and_serves_no_other(emulator):
    emulator.create_session(SESSION, KEY, link=True)

    async def wait() -> tuple[weakref.ref[asyncio.AbstractEventLoop], SessionCheckCache]:
        await first_payload(WhatsInfinitySessionReadyTrigger("wi_right", 60))
        return weakref.ref(asyncio.get_running_loop()), SessionCheckCache.of_running_loop()

    loop_ref, cache = asyncio.run(wait())
    key = CheckKey("http://127.0.0.1:1", SESSION, "0" * 64, 30.0, RetrySettings())
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(cache.check(key, max_age=60))
    gc.collect()
    old_loop = loop_ref()
    if old_loop is not None:  # asgiref's sync_to_async keeps the last loop it ran from in a thread-local
        assert not any(referrer is cache.__dict__ for referrer in gc.get_referrers(old_loop))

        async def new_loop_cache() -> None:
            SessionCheckCache.of_running_loop()

        asyncio.run(new_loop_cache())
        assert old_loop not in shared_check._caches  # closed: forgotten when a new loop's cache is made


def test_entries_live_while_their_triggers_wait(emulator):
    emulator.create_session(SESSION, KEY)
    emulator.create_session(OTHER_SESSION, OTHER_KEY)

    async def run() -> None:
        cache = SessionCheckCache.of_running_loop()
        tasks = start("wi_right", 5, 0.2) + start("wi_other", 5, 0.2)
        await asyncio.sleep(0.8)
        assert sorted(key.session_id for key in cache) == sorted([SESSION, OTHER_SESSION])
        shown = repr(cache)
        assert KEY not in shown
        assert OTHER_KEY not in shown
        await asyncio.to_thread(emulator.link, SESSION)
        await asyncio.gather(*tasks[:5])
        assert [key.session_id for key in cache] == [OTHER_SESSION]
        for task in tasks[5:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Nobody asks about either session any more: nothing is kept.
        assert len(cache) == 0

    asyncio.run(run())


def test_a_timeout_ends_each_trigger_on_time_with_a_shared_slow_check(emulator):
    emulator.create_session(SESSION, KEY)
    emulator.add_fault(f"/check-session/{SESSION}", "delay", seconds=15, times=1)

    async def run() -> list[dict[str, Any]]:
        soon = time.time() + 1
        return await asyncio.gather(*start("wi_right", 5, 0.5, timeout_at=soon))

    started = time.monotonic()
    payloads = asyncio.run(run())
    assert [payload["outcome"] for payload in payloads] == ["timeout"] * 5
    assert time.monotonic() - started < 1 + 0.5 + 2


def test_a_check_key_holds_no_key():
    async def keys() -> tuple[CheckKey, CheckKey, CheckKey]:
        from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient

        def client(api_key: str) -> AsyncWhatsInfinityClient:
            return AsyncWhatsInfinityClient(
                session_id=SESSION, api_key=api_key, base_url="https://user:secret-pw@example.invalid"
            )

        return CheckKey.of(client(KEY)), CheckKey.of(client(KEY)), CheckKey.of(client(WRONG_KEY))

    same, again, other = asyncio.run(keys())
    assert same == again
    assert hash(same) == hash(again)
    assert same != other
    plain = hashlib.sha256(KEY.encode()).hexdigest()
    for text in (repr(same), str(same.__dict__)):
        assert KEY not in text
        assert plain not in text  # salted: not the digest anyone can compute from a guessed key
    assert "secret-pw" not in repr(same)
