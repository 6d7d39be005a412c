"""The local model registry: SQLite (sqlite-utils) plus a content-addressed artifact store."""

from .db import open_database
from .models import ModelRecord, Registry, Variant, VersionRecord
from .store import ArtifactStore

__all__ = ["ArtifactStore", "ModelRecord", "Registry", "Variant", "VersionRecord", "open_database"]
