"""The box's HTTP fetcher for ``tuf.ngclient``: urllib3 pools it owns and closes.

It behaves like ngclient's own ``Urllib3Fetcher`` (proxies from ``http_proxy`` /
``https_proxy`` / ``no_proxy``, a connect and gap timeout, HTTP errors as
``DownloadHTTPError``) with two differences that matter on a box that syncs for months:
a download abandoned midway (more bytes arrive than the signed length allows) closes its
connection at once instead of leaving it to the garbage collector or handing a half-read
one back to the pool; downloads spool to ``spool_dir`` (the box's sync folder, not a
small ``/tmp``); and ``close()`` releases every pooled socket.
"""

from __future__ import annotations

import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import urllib3
from tuf.api.exceptions import DownloadHTTPError, DownloadLengthMismatchError, SlowRetrievalError
from tuf.ngclient import FetcherInterface


class HttpFetcher(FetcherInterface):
    """GET over HTTP(S); ``timeout_s`` bounds the connect and every gap between bytes."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout_s: float = 30.0,
        chunk_size: int = 256 * 1024,
        spool_dir: Path | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self.chunk_size = chunk_size
        self._headers = {"User-Agent": user_agent}
        self._proxies = urllib.request.getproxies()
        self._managers: dict[str | None, urllib3.PoolManager] = {}

    def close(self) -> None:
        """Close every pooled connection (the fetcher stays usable)."""
        for manager in self._managers.values():
            manager.clear()

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """``FetcherInterface.download_file``, spooling to ``spool_dir`` and closing the
        connection as soon as the download stops (done, too long, or failed)."""
        chunks = self.fetch(url)
        try:
            if self.spool_dir is not None:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.spool_dir) as spool:
                received = 0
                for chunk in chunks:
                    received += len(chunk)
                    if received > max_length:
                        raise DownloadLengthMismatchError(
                            f"{url} sent more than the {max_length} bytes allowed"
                        )
                    spool.write(chunk)
                spool.seek(0)
                yield spool
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        proxy = None
        if not urllib.request.proxy_bypass(parts.hostname or ""):
            proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
        if proxy not in self._managers:
            self._managers[proxy] = (
                urllib3.ProxyManager(proxy, headers=self._headers)
                if proxy
                else urllib3.PoolManager(headers=self._headers)
            )
        return self._managers[proxy]

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._manager(url).request(
                "GET", url, preload_content=False, timeout=self.timeout
            )
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError):
                raise SlowRetrievalError(f"{url}: no answer within {self.timeout}") from exc
            raise
        if response.status >= 400:
            response.close()
            raise DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._chunks(response, url)

    def _chunks(self, response: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
        complete = False
        try:
            yield from response.stream(self.chunk_size)
            complete = True
        except urllib3.exceptions.TimeoutError as exc:
            raise SlowRetrievalError(f"{url}: the download stalled") from exc
        finally:
            if complete:
                response.release_conn()
            else:  # abandoned or failed midway: never pool a half-read connection
                response.close()
