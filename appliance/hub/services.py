"""One hub's resources, opened together: settings, database, TUF repository, keys.

    hub = open_hub(load_hub_settings(Path("hub")))
    try:
        ...  # enrolment, reports, publish, rollout functions take ``hub``
    finally:
        hub.close()

The hub directory holds ``hub.db`` (unless ``database_url`` names another database),
``repo/`` (the static TUF files, :mod:`.tuf_repo`), ``keys/`` (the TUF signing keys,
the ``tokens`` key that signs local operator tokens, ``box.key`` that wraps package data
keys, ``trusted/`` publisher keys) and ``tmp/`` (uploads and encryption in progress).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Conflict
from ..security.keys import KeyStore
from .settings import HubSettings
from .store import HubStore

if TYPE_CHECKING:
    from .tuf_repo import HubRepository


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class Hub:
    """The open resources of one hub; :meth:`close` releases them."""

    settings: HubSettings
    store: HubStore
    secrets: KeyStore
    _repository: HubRepository | None = field(default=None, repr=False)

    @property
    def directory(self) -> Path:
        return self.settings.data_dir

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the hub's own disk (uploads, encryption), 0700."""
        return _private_dir(self.directory / "tmp")

    @property
    def repository(self) -> HubRepository:
        """The TUF repository (opened on first use)."""
        if self._repository is None:
            from .tuf_repo import HubRepository

            self._repository = HubRepository(self.directory)
        return self._repository

    def package_key(self) -> bytes:
        """The hub's key-encryption key (``keys/box.key``): it wraps each published
        package's data key, so the hub can wrap that key again for a box enrolled later
        without re-encrypting the package."""
        return self.secrets.box_key()

    def close(self) -> None:
        self.store.close()


def is_initialised(directory: Path) -> bool:
    return (directory / "repo" / "metadata" / "root.json").is_file()


def init_hub(settings: HubSettings) -> dict[str, Any]:
    """Create the hub in ``settings.data_dir``: the TUF repository and its keys, the
    database schema, the token and package keys. Conflict if one is there already."""
    from .tuf_repo import HubRepository

    directory = settings.data_dir
    if is_initialised(directory):
        raise Conflict(f"{directory} already holds a hub (repo/metadata/root.json exists); "
                       "give another directory, or serve this one with `appliance hub serve`")
    _private_dir(directory)
    os.chmod(directory, 0o700)
    store = HubStore.for_directory(directory, settings.database_url)
    try:
        secrets = KeyStore(directory)
        secrets.box_key()
        secrets.signing_key("tokens")
        repository = HubRepository.create(directory, bins=settings.bins)
        root = repository.root_bytes()
    finally:
        store.close()
    return {"directory": str(directory), "database": store.url, "bins": settings.bins,
            "root_bytes": len(root)}


def open_hub(settings: HubSettings) -> Hub:
    """The hub in ``settings.data_dir``; ConfigError naming ``appliance hub init`` when
    the directory holds none."""
    if not is_initialised(settings.data_dir):
        raise ConfigError(f"{settings.data_dir} holds no hub: create one with `appliance hub "
                          f"init {settings.data_dir}`")
    secrets = KeyStore(settings.data_dir)
    secrets.check()
    return Hub(settings, HubStore.for_directory(settings.data_dir, settings.database_url),
               secrets)
