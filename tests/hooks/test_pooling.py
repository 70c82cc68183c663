"""Connection pools: one per sync client, one per event loop for all async clients."""

from __future__ import annotations

import asyncio

from airflow_provider_whatsinfinity.client import AsyncWhatsInfinityClient, WhatsInfinityClient
from tests.conftest import KEY, SESSION


def test_async_clients_on_one_loop_share_one_pool_but_keep_their_own_keys(whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    whatsinfinity_emulator.create_session("other", "other-key-0123456789")

    async def run():
        mine = AsyncWhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url)
        theirs = AsyncWhatsInfinityClient(
            session_id="other", api_key="other-key-0123456789", base_url=whatsinfinity_emulator.url
        )
        statuses = await asyncio.gather(mine.check_session(), theirs.check_session())
        assert mine._http is theirs._http
        pool = mine._http
        await mine.aclose()
        assert not pool.is_closed  # the loop's shared pool outlives one client
        assert (await theirs.check_session()).status == "qr"
        return [s.status for s in statuses], pool

    first_statuses, first_pool = asyncio.run(run())
    assert first_statuses == ["active", "qr"]
    _, second_pool = asyncio.run(run())
    assert second_pool is not first_pool  # a new loop, a new pool


def test_a_sync_client_reuses_its_pool(whatsinfinity_emulator):
    whatsinfinity_emulator.create_session(SESSION, KEY, link=True)
    with WhatsInfinityClient(session_id=SESSION, api_key=KEY, base_url=whatsinfinity_emulator.url) as client:
        client.check_session()
        pool = client._http
        client.check_session()
        assert client._http is pool
    assert pool.is_closed
