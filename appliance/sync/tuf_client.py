"""The box's side of fleet sync: verify the hub's TUF repository with ``tuf.ngclient``.

``HubClient`` keeps two folders that must persist across restarts:

* ``metadata_dir`` — the metadata this box has verified (ngclient's cache). It is what
  stops a rollback: nothing older than what is there is ever accepted again.
* ``cache_dir`` — verified targets, named by their URL-quoted target path; a target
  already there with the right length and hash is never downloaded again.

Each ``refresh`` runs a fresh ``Updater`` (ngclient allows one refresh per instance) and
adopts it only when it verified completely; until then ``desired`` and ``download`` keep
answering from the last verified state, so a refused update leaves the box as it was.
Every failure is a ``SyncRefused`` whose ``kind`` names the attack (see
``appliance.sync.errors``). Packages (``packages/…``) must be listed in top-level
targets, which the offline targets key signs: a target only the online key vouches for
(a hash bin) is refused, so a stolen online key cannot ship an artifact.

``base_url`` is the repository's root (``<base>/metadata/``, ``<base>/targets/``); a URL
ending in ``/metadata`` is taken as the metadata URL itself (targets beside it), and
``targets_url`` overrides where targets come from. For an air-gapped bundle pass a
``DirectoryFetcher`` on the bundle's folder: its files are read as ``bundle:/metadata/…``
and ``bundle:/targets/…`` whatever ``base_url`` says (that then only labels messages).
The same folders later continue online with a client on the hub's URL.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib import parse

from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from appliance.hub.tuf_files import atomic_copy, fsync_dir
from appliance.hub.tuf_layout import PACKAGES_PREFIX, check_target_path, desired_path
from appliance.sync.directory_fetcher import DirectoryFetcher
from appliance.sync.errors import SyncRefused, refusal
from appliance.sync.http_fetcher import HttpFetcher

__all__ = ["DirectoryFetcher", "HubClient", "SyncRefused"]

USER_AGENT = "appliance-sync/1"
#: beside the metadata folder: the kept ETag and body of timestamp.json (conditional polls)
ETAG_DIR = "http-cache"


class HubClient:
    """A box's view of one hub repository at ``base_url`` (``<base>/metadata/`` and
    ``<base>/targets/``). ``bootstrap`` is the root metadata enrolment handed the box;
    without it the root this box last verified (``metadata_dir/root.json``) is the
    trust anchor."""

    def __init__(
        self,
        metadata_dir: Path,
        base_url: str,
        cache_dir: Path,
        *,
        bootstrap: bytes | None = None,
        fetcher: FetcherInterface | None = None,
        config: UpdaterConfig | None = None,
        targets_url: str | None = None,
    ) -> None:
        self.metadata_dir = Path(metadata_dir)
        self.cache_dir = Path(cache_dir)
        self.base_url = base_url
        self._metadata_url, self._targets_url = _urls(base_url, targets_url, fetcher)
        # a DirectoryFetcher names its folder; an HTTP base URL names itself
        self.source = (
            f"the bundle in {fetcher.root}" if isinstance(fetcher, DirectoryFetcher) else base_url
        )
        self._bootstrap = bootstrap
        self._config = config or UpdaterConfig(app_user_agent=USER_AGENT)
        self._own_fetcher: HttpFetcher | None = None
        if fetcher is None:
            fetcher = self._own_fetcher = HttpFetcher(
                user_agent=USER_AGENT,
                spool_dir=self.cache_dir / ".spool",
                etag_dir=self.metadata_dir.parent / ETAG_DIR,
            )
        self._fetcher = fetcher
        self._updater: Updater | None = None
        self._packages: dict[str, TargetFile] = {}
        self._lock = threading.RLock()

    def refresh(self, device_ids: Iterable[str] = ()) -> None:
        """Fetch and verify root, timestamp, snapshot and targets (and the hash bins of
        ``device_ids``); adopt the result only if all of it verified. SyncRefused
        otherwise, the last verified state still in use."""
        with self._lock:
            paths = [desired_path(d) for d in device_ids]
            updater = self._new_updater()
            with self._refusing():
                updater.refresh()
                for path in paths:
                    updater.get_targetinfo(path)
                top = Metadata[Targets].from_file(str(self.metadata_dir / "targets.json"))
            self._updater, self._packages = updater, dict(top.signed.targets)

    def desired(self, device_id: str) -> dict[str, Any] | None:
        """The verified desired state of ``device_id`` (``devices/<id>/desired.json``), or
        None when the hub publishes none. Refreshes first if this client never has."""
        with self._lock:
            info = self._targetinfo(desired_path(device_id))
            if info is None:
                return None
            local = self._cached(info)
            try:
                value = json.loads(local.read_bytes())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SyncRefused(
                    "other", f"the hub's desired state for {device_id} is not JSON ({exc})"
                ) from exc
            if not isinstance(value, dict):
                raise SyncRefused(
                    "other",
                    f"the hub's desired state for {device_id} is a JSON "
                    f"{type(value).__name__}, not an object: fix it on the hub",
                )
            return value

    def download(self, target_path: str, dest_dir: Path) -> Path:
        """A verified copy of ``target_path`` as ``dest_dir/<basename>``; served from the
        cache when it already holds the right bytes. SyncRefused when the hub does not
        list the target, a package is not signed by the targets key, or the bytes fail
        verification (``bad-hash``, ``too-large``)."""
        check_target_path(target_path)
        with self._lock:
            info = self._targetinfo(target_path)
            if info is None:
                raise SyncRefused(
                    "other",
                    f"the hub lists no target {target_path}: check the name, or publish it on "
                    "the hub first",
                )
            if target_path.startswith(PACKAGES_PREFIX) and self._packages.get(target_path) != info:
                raise SyncRefused(
                    "bad-signature",
                    f"refused target {target_path}: it is not signed by the hub's targets key, "
                    "only by the online key (a hash bin); a stolen online key or a "
                    "misconfigured hub, nothing was downloaded",
                )
            local = self._cached(info)
            dest = Path(dest_dir) / target_path.rsplit("/", 1)[-1]
            assert self._updater is not None  # _targetinfo refreshed
            if self._updater.find_cached_target(info, str(dest)) is None:
                copied = atomic_copy(local, dest)
                if copied != (info.length, info.hashes.get("sha256")):
                    dest.unlink(missing_ok=True)
                    raise SyncRefused(
                        "bad-hash", f"{local} changed on disk while copied to {dest}: retry"
                    )
            return dest

    def close(self) -> None:
        """Close the HTTP connections this client opened (a fetcher passed in is the
        caller's to close); the client stays usable."""
        if self._own_fetcher is not None:
            self._own_fetcher.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trusted_root_version(self) -> int | None:
        """The version of the root this box trusts now (None before enrolment)."""
        path = self.metadata_dir / "root.json"
        if not path.exists():
            return None
        return Metadata[Root].from_file(str(path)).signed.version

    # -- internals ----------------------------------------------------------------------

    def _new_updater(self) -> Updater:
        if self._bootstrap is None and not (self.metadata_dir / "root.json").exists():
            raise SyncRefused(
                "other",
                f"this box trusts no hub root yet ({self.metadata_dir} has no root.json): "
                "enrol it, passing the hub's root metadata as bootstrap",
            )
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._refusing():
            return Updater(
                str(self.metadata_dir),
                self._metadata_url,
                str(self.cache_dir),
                self._targets_url,
                self._fetcher,
                self._config,
                bootstrap=self._bootstrap,
            )

    def _targetinfo(self, path: str) -> TargetFile | None:
        if self._updater is None:
            self.refresh()
        assert self._updater is not None
        with self._refusing():
            return self._updater.get_targetinfo(path)

    def _cached(self, info: TargetFile) -> Path:
        """The verified local file of ``info``, downloaded into the cache if needed."""
        assert self._updater is not None
        final = self.cache_dir / parse.quote(info.path, "")
        if self._updater.find_cached_target(info, str(final)) is not None:
            return final
        partial = final.with_name(f".{final.name}.partial")
        try:
            with self._refusing(target=info.path):
                self._updater.download_target(info, str(partial))
            os.replace(partial, final)
            fsync_dir(final.parent)
        finally:
            partial.unlink(missing_ok=True)
        return final

    @contextmanager
    def _refusing(self, target: str | None = None) -> Iterator[None]:
        try:
            yield
        except (RepositoryError, DownloadError, OSError) as exc:
            raise refusal(exc, source=self.source, target=target) from exc


def _urls(
    base_url: str, targets_url: str | None, fetcher: FetcherInterface | None
) -> tuple[str, str]:
    """(metadata URL, targets URL), each ending in a slash."""
    if isinstance(fetcher, DirectoryFetcher):
        return f"{fetcher.scheme}:/metadata/", f"{fetcher.scheme}:/targets/"
    base = base_url.rstrip("/")
    if base.endswith("/metadata"):
        metadata, base = f"{base}/", base[: -len("/metadata")]
    else:
        metadata = f"{base}/metadata/"
    targets = targets_url.rstrip("/") + "/" if targets_url else f"{base}/targets/"
    return metadata, targets
