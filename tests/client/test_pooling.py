"""Connection pools: one per client, reused across calls; one SSL context for the whole process."""

from __future__ import annotations

import asyncio

from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient, WhatsInfinityClient, ssl_context
from tests.common import KEY, SESSION


def test_clients_share_one_ssl_context_but_not_their_keys(whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.create_session("other", "other-key-0123456789")

    async def run():
        mine = AsyncWhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url)
        theirs = AsyncWhatsInfinityClient(
            session_id="other", api_key="other-key-0123456789", base_url=whatsinfinity_emulator.url
        )
        statuses = await asyncio.gather(mine.check_session(), theirs.check_session())
        pools = (mine._http, theirs._http)
        await mine.aclose()
        await theirs.aclose()
        return [s.status for s in statuses], pools

    statuses, (first, second) = asyncio.run(run())
    assert statuses == ["active", "qr"]
    assert first is not second
    assert first.is_closed
    assert second.is_closed
    sync = WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url)
    # httpx builds an SSL context per client unless given one (~18 ms, ~800 KiB): all of ours share one.
    assert ssl_context() is ssl_context()
    assert sync._http._transport._pool._ssl_context is ssl_context()  # type: ignore[attr-defined]
    sync.close()


def test_a_sync_client_reuses_its_pool(whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    with WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url) as client:
        client.check_session()
        pool = client._http
        client.check_session()
        assert client._http is pool
    assert pool.is_closed


def test_a_copy_has_the_same_settings_and_key_and_a_pool_of_its_own(linked):
    async def check() -> None:
        original = AsyncWhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=linked.url, timeout=7)
        copy = original.copy()
        assert (copy.session_id, copy.base_url, copy.timeout, copy.retry) == (
            SESSION,
            linked.url,
            7,
            original.retry,
        )
        assert (await copy.check_session()).is_ready  # the key went with it
        await original.check_session()
        assert copy._http is not original._http
        await copy.aclose()
        assert (await original.check_session()).is_ready  # closing the copy leaves the original's pool
        await original.aclose()

    asyncio.run(check())
