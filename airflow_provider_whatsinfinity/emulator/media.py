"""
Media downloads for ``--fetch-media``: the whole file within one timeout, size-capped, fingerprinted.

The emulated service downloads a sent media URL before it accepts the message, as the real one does,
so that a URL the phone could not fetch fails the send with 400 instead of arriving broken.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from airflow_provider_whatsinfinity.emulator.model import bad_request


class MediaFetcher:
    """
    Downloads media URLs with one HTTP client, made on first use.

    :param timeout: Seconds allowed for one whole download, however slowly the bytes trickle in.
    :param max_bytes: Largest file downloaded; a larger one fails with 400.
    """

    def __init__(self, timeout: float, max_bytes: int) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    async def fetch(self, url: str) -> tuple[int, str]:
        """
        Download a media file whole.

        :param url: The media's URL, as sent.
        :return: Its size in bytes and its sha256 as hex.
        :raises ApiError: 400 naming the URL and why it could not be fetched.
        """
        try:
            # The client's own timeout bounds each read; this bounds the whole download.
            return await asyncio.wait_for(self._download(url), self.timeout)
        except asyncio.TimeoutError:
            raise bad_request(
                f"Could not fetch media from {url}: the download took longer than the "
                f"{self.timeout:g} s fetch timeout"
            ) from None

    async def _download(self, url: str) -> tuple[int, str]:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=True, timeout=self.timeout)
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise bad_request(
                        f"Could not fetch media from {url}: HTTP {response.status_code}; "
                        "the URL must be publicly accessible"
                    )
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise bad_request(f"Media at {url} is larger than {self.max_bytes} bytes")
                    digest.update(chunk)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise bad_request(f"Could not fetch media from {url}: {reason}") from exc
        return size, digest.hexdigest()

    async def aclose(self) -> None:
        """Close the HTTP client, if one was made."""
        if self._client is not None:
            await self._client.aclose()
