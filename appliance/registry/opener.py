"""The one way to open a registry: with the plugins' box key and the encryption setting.

Every process that opens ``registry.db`` (the CLI, the server's services and admin
handlers, scheduled jobs) goes through :func:`open_registry` (a context manager that
closes the connection) or, for a connection kept as long as the process runs,
:func:`connect_registry`. Both apply the ``appliance_box_key`` hook of the plugins, so a
box whose key comes from a TPM or KMS plugin never gets a fresh ``keys/box.key``.

``where`` is the settings (``data_dir`` and ``encrypt_artifacts``), a data directory, or
an open :class:`Registry`, whose data directory, box-key provider and encryption setting
the new connection shares (a connection of its own for another thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ..security.crypto_store import plugin_box_key
from .models import Registry

if TYPE_CHECKING:
    from ..settings import Settings

Where: TypeAlias = "Settings | Path | str | Registry"
BoxKeyProvider = Callable[[], bytes | None]


def box_key_provider(pm: Any, data_dir: Path) -> BoxKeyProvider:
    """The ``appliance_box_key`` hook of ``pm`` (None: a fresh plugin manager) as a
    ``box_key_provider`` (None from the hook: use ``keys/box.key``)."""
    if pm is None:
        from ..plugins import get_plugin_manager  # the plugins are loaded only when needed

        pm = get_plugin_manager()
    return plugin_box_key(pm, data_dir)


def connect_registry(where: Where, *, pm: Any = None,
                     encrypt_artifacts: bool | None = None) -> Registry:
    """A registry connection the caller closes (``registry.close()``); see the module
    docstring for ``where``. ``encrypt_artifacts`` overrides the setting it implies."""
    if isinstance(where, Registry):
        encrypt = where.store.encrypt if encrypt_artifacts is None else encrypt_artifacts
        return Registry(where.data_dir, box_key_provider=where.box_key_provider,
                        encrypt_artifacts=encrypt)
    if isinstance(where, str | Path):
        data_dir, implied = Path(where), True
    else:
        data_dir, implied = where.data_dir, where.encrypt_artifacts
    return Registry(data_dir, box_key_provider=box_key_provider(pm, data_dir),
                    encrypt_artifacts=implied if encrypt_artifacts is None else encrypt_artifacts)


@contextmanager
def open_registry(where: Where, *, pm: Any = None,
                  encrypt_artifacts: bool | None = None) -> Iterator[Registry]:
    """``with open_registry(settings) as registry:`` a connection closed on the way out."""
    registry = connect_registry(where, pm=pm, encrypt_artifacts=encrypt_artifacts)
    try:
        yield registry
    finally:
        registry.close()
