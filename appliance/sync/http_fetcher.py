"""The box's HTTP fetcher for ``tuf.ngclient``: urllib3 pools it owns and closes.

It behaves like ngclient's own ``Urllib3Fetcher`` (proxies from ``http_proxy`` /
``https_proxy`` / ``no_proxy``, a connect and gap timeout, HTTP errors as
``DownloadHTTPError``) with two differences that matter on a box that syncs for months:
a download abandoned midway (more bytes arrive than the signed length allows) closes its
connection at once instead of leaving it to the garbage collector or handing a half-read
one back to the pool; downloads spool to ``spool_dir`` (the box's sync folder, not a
small ``/tmp``); and ``close()`` releases every pooled socket.

**Conditional polls.** ``timestamp.json`` is the one file an idle box fetches every
cycle. With ``etag_dir`` set, its last body and ``ETag`` are kept there and the next GET
sends ``If-None-Match``: a static host (nginx, a CDN, the hub's ``/repo``) answers
``304`` with no body and the fetcher hands ngclient the kept bytes, which ngclient
verifies exactly as if they had been downloaded (signature, version, expiry: a frozen
timestamp still expires). The kept body is only ever bytes this server sent for that
URL; a 304 with no kept body is a download error.
"""

from __future__ import annotations

import hashlib
import json
import os
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
        etag_dir: Path | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.etag_dir = etag_dir
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

    def _conditional(self, url: str) -> Path | None:
        """Where the kept ``(etag, body)`` of ``url`` lives, if it is polled conditionally."""
        if self.etag_dir is None or not url.endswith(CONDITIONAL):
            return None
        return self.etag_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"

    def _fetch(self, url: str) -> Iterator[bytes]:
        kept_path = self._conditional(url)
        kept = _read_kept(kept_path) if kept_path is not None else None
        headers = dict(self._headers)
        if kept is not None:
            headers["If-None-Match"] = kept[0]
        try:
            response = self._manager(url).request(
                "GET", url, preload_content=False, timeout=self.timeout, headers=headers
            )
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError):
                raise SlowRetrievalError(f"{url}: no answer within {self.timeout}") from exc
            raise
        if response.status == 304 and kept is not None:
            response.release_conn()
            return iter((kept[1],))
        if response.status >= 300:
            response.close()
            raise DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        etag = response.headers.get("ETag")
        if kept_path is not None and etag:
            return _keeping(self._chunks(response, url), kept_path, etag)
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


#: the URLs polled with If-None-Match (every other metadata file is versioned)
CONDITIONAL = ("/timestamp.json",)
#: a kept body larger than this is not kept (ngclient's timestamp limit is 16 KiB)
MAX_KEPT = 64 * 1024


def _read_kept(path: Path) -> tuple[str, bytes] | None:
    try:
        kept = json.loads(path.read_text())
        return str(kept["etag"]), bytes.fromhex(kept["body"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: an unconditional GET


def _keeping(chunks: Iterator[bytes], path: Path, etag: str) -> Iterator[bytes]:
    """``chunks``, and once they all arrived, ``(etag, body)`` written to ``path``."""
    body = bytearray()
    try:
        for chunk in chunks:
            if len(body) <= MAX_KEPT:
                body += chunk
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # abandoned midway: the connection is closed, not pooled
    if len(body) > MAX_KEPT:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"etag": etag, "body": bytes(body).hex()}))
    os.replace(tmp, path)
