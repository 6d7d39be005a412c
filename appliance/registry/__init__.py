"""The local model registry: SQLite (sqlite-utils) plus a content-addressed artifact store.

Open one with :func:`open_registry` (a context manager) or :func:`connect_registry`:
both apply the plugins' box key (:mod:`appliance.registry.opener`)."""

from .db import open_database
from .models import ModelRecord, Registry, Variant, VersionRecord, version_key
from .opener import connect_registry, open_registry
from .store import ArtifactStore

__all__ = ["ArtifactStore", "ModelRecord", "Registry", "Variant", "VersionRecord",
           "connect_registry", "open_database", "open_registry", "version_key"]
