"""Read a TUF repository from a local folder (an air-gapped bundle) through ngclient.

``DirectoryFetcher(root)`` answers URLs ``bundle:/<path>`` (or ``bundle:<path>``) with the
bytes of ``root/<path>``, so the same ``tuf.ngclient.Updater`` that talks to the hub
verifies a USB bundle: give ``HubClient`` the base URL ``bundle:`` and this fetcher.
A missing file is an HTTP 404 to ngclient (which is how it learns that no newer root
exists), and a path that leaves ``root`` (``..``, a symlink out) is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib import parse

from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

_CHUNK = 1 << 20


class DirectoryFetcher(FetcherInterface):
    """Serve ``<scheme>:/<path>`` URLs from files under ``root``."""

    def __init__(self, root: Path, *, scheme: str = "bundle") -> None:
        self.root = Path(root).resolve()
        self.scheme = scheme

    def path_for(self, url: str) -> Path:
        """The file a URL names; DownloadError for another scheme or a path outside root."""
        prefix = f"{self.scheme}:"
        if not url.startswith(prefix):
            raise DownloadError(f"{url!r} is not a {prefix} URL: this fetcher reads {self.root}")
        relative = parse.unquote(url[len(prefix) :]).lstrip("/")
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise DownloadError(f"{url!r} points outside the bundle folder {self.root}")
        return path

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = self.path_for(url)
        if not path.is_file():
            raise DownloadHTTPError(f"{path} is not in the bundle", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk
