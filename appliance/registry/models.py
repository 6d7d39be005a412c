"""Models and versions in the registry: record, look up, list.

Each write is one SQLite transaction (see :func:`appliance.registry.db.transaction`);
artifact files are already in the store, complete, before a version row points at them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backend import ModelSource
from ..errors import BadRequest, Conflict, NotFound
from ..security.keys import KeyStore
from ..signature import TensorSpec, specs_from_dicts
from .db import bump_generation, now, open_database, transaction
from .events import record_event
from .store import ArtifactStore, StoredFile

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(kind: str, value: str) -> str:
    if not NAME_RE.match(value or ""):
        raise BadRequest(f"{kind} {value!r} is not valid: use 1-128 letters, digits, '.', '_' "
                         "or '-', starting with a letter or digit")
    return value


@dataclass
class Variant:
    """One set of files of a version: a precision and format the profile can pick."""

    precision: str
    format: str
    primary_file: str
    digest: str
    files: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "format": self.format,
                "primary_file": self.primary_file, "digest": self.digest, "files": self.files}


@dataclass
class VersionRecord:
    model: str
    version: str
    format: str
    primary_file: str
    files: list[dict[str, Any]]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    digest: str
    stage: str
    created_at: str
    created_by: str
    source: str
    precision: str = "fp32"
    variants: list[Variant] = field(default_factory=list)
    backend: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    package_digest: str | None = None
    stage_changed_at: str | None = None
    failure_reason: str | None = None
    deprecation_date: str | None = None
    sunset_date: str | None = None
    successor: str | None = None

    def all_variants(self) -> list[Variant]:
        """The main files as a variant, then the extra variants."""
        main = Variant(self.precision, self.format, self.primary_file, self.digest, self.files)
        return [main, *self.variants]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "format": self.format,
                "primary_file": self.primary_file, "files": self.files,
                "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs], "digest": self.digest,
                "stage": self.stage, "created_at": self.created_at,
                "created_by": self.created_by, "source": self.source,
                "precision": self.precision, "backend": self.backend,
                "variants": [v.to_dict() for v in self.variants], "manifest": self.manifest,
                "package_digest": self.package_digest,
                "stage_changed_at": self.stage_changed_at,
                "failure_reason": self.failure_reason,
                "deprecation_date": self.deprecation_date, "sunset_date": self.sunset_date,
                "successor": self.successor}


@dataclass
class ModelRecord:
    name: str
    created_at: str
    created_by: str
    versions: list[VersionRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at,
                "created_by": self.created_by,
                "versions": [v.to_dict() for v in self.versions]}


def version_key(version: str) -> tuple[int, int | str]:
    """Sort key for version names: numbered versions in numeric order, then named ones."""
    return (0, int(version)) if version.isdigit() else (1, version)



def _row_to_version(row: dict[str, Any]) -> VersionRecord:
    return VersionRecord(
        model=row["model"], version=row["version"], format=row["format"],
        primary_file=row["primary_file"], files=json.loads(row["files"]),
        inputs=specs_from_dicts(json.loads(row["inputs"])),
        outputs=specs_from_dicts(json.loads(row["outputs"])), digest=row["digest"],
        stage=row["stage"], created_at=row["created_at"], created_by=row["created_by"],
        source=row["source"] or "", precision=row["precision"],
        variants=[Variant(**v) for v in json.loads(row["variants"])], backend=row["backend"],
        manifest=json.loads(row["manifest"] or "{}"), package_digest=row["package_digest"],
        stage_changed_at=row["stage_changed_at"], failure_reason=row["failure_reason"],
        deprecation_date=row["deprecation_date"], sunset_date=row["sunset_date"],
        successor=row["successor"])


class Registry:
    """The registry of one data directory.

    ``box_key_provider`` is the ``appliance_box_key`` hook (a TPM or KMS key instead of
    ``keys/box.key``); ``encrypt_artifacts`` encrypts newly stored files at rest.
    """

    def __init__(self, data_dir: Path, *,
                 box_key_provider: Callable[[], bytes | None] | None = None,
                 encrypt_artifacts: bool = True) -> None:
        self.data_dir = data_dir
        self.box_key_provider = box_key_provider
        self.keys = KeyStore(data_dir, box_key_provider)
        self.db = open_database(data_dir / "registry.db")
        self.store = ArtifactStore(data_dir / "artifacts", self.keys,
                                   encrypt=encrypt_artifacts, box_key_provider=box_key_provider)

    def close(self) -> None:
        self.db.conn.close()

    def artifact_path(self, record: VersionRecord | Variant) -> Path:
        """Where the primary file is stored (encrypted, unless stored before encryption
        was on): read it through :meth:`model_source`, never directly."""
        return self.store.path_for(record.digest) / record.primary_file

    def model_source(self, record: VersionRecord | Variant) -> ModelSource:
        """The ModelSource a backend loads ``record`` from (decrypting into memory)."""
        expected = {str(f["name"]): str(f["sha256"]) for f in record.files}
        fmt = record.format
        return self.store.source(self.artifact_path(record), fmt, expected)

    def next_version(self, model: str) -> str:
        rows = self.db.execute("SELECT version FROM versions WHERE model = ?", [model]).fetchall()
        numbers = [int(v) for (v,) in rows if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    def record_version(self, *, model: str, version: str, fmt: str, primary_file: str,
                       files: list[StoredFile], digest: str, inputs: list[TensorSpec],
                       outputs: list[TensorSpec], created_by: str, source: str,
                       stage: str = "registered", precision: str = "fp32",
                       variants: list[Variant] | None = None,
                       backend: str | None = None, manifest: dict[str, Any] | None = None,
                       package_digest: str | None = None) -> VersionRecord:
        """Insert the model (if new) and the version in one transaction."""
        at = now()
        with transaction(self.db):
            exists = self.db.execute("SELECT digest FROM versions WHERE model=? AND version=?",
                                     [model, version]).fetchone()
            if exists:
                raise Conflict(f"model {model!r} already has a version {version!r}; "
                               "choose another --version or omit it to get the next number")
            self.db.execute("INSERT OR IGNORE INTO models (name, created_at, created_by, "
                            "description) VALUES (?, ?, ?, '')", [model, at, created_by])
            self.db.execute(
                "INSERT INTO versions (model, version, format, primary_file, files, inputs, "
                "outputs, artifact, digest, stage, created_at, created_by, source, precision, "
                "variants, backend) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [model, version, fmt, primary_file, json.dumps([f.to_dict() for f in files]),
                 json.dumps([s.to_dict() for s in inputs]),
                 json.dumps([s.to_dict() for s in outputs]), f"sha256/{digest}", digest, stage,
                 at, created_by, source, precision,
                 json.dumps([v.to_dict() for v in variants or []]), backend])
            record_event(self.db, at=at, actor=created_by, action="add", model=model,
                         version=version, detail={"source": source})
            self.db.execute("UPDATE versions SET manifest = ?, package_digest = ?, "
                            "stage_changed_at = ? WHERE model = ? AND version = ?",
                            [json.dumps(manifest or {}), package_digest, at, model, version])
            self.db.execute("INSERT INTO stage_history (model, version, from_stage, to_stage, "
                            "at, actor, reason) VALUES (?, ?, NULL, ?, ?, ?, 'added')",
                            [model, version, stage, at, created_by])
            bump_generation(self.db)
        return self.version(model, version)

    def set_manifest(self, model: str, version: str, manifest: dict[str, Any], *,
                     actor: str, action: str, detail: dict[str, Any]) -> VersionRecord:
        """Replace one version's manifest record, with an ``action`` event, in one
        transaction (a signature attached to a version pushed unsigned)."""
        with transaction(self.db):
            self.db.execute("UPDATE versions SET manifest = ? WHERE model = ? AND version = ?",
                            [json.dumps(manifest), model, version])
            record_event(self.db, actor=actor, action=action, model=model, version=version,
                         detail=detail)
        return self.version(model, version)

    def versions(self, model: str | None = None) -> list[VersionRecord]:
        where, args = ("WHERE model = ?", [model]) if model else ("", [])
        cur = self.db.execute(f"SELECT * FROM versions {where} ORDER BY model, id", args)
        cols = [c[0] for c in cur.description]
        records = [_row_to_version(dict(zip(cols, row))) for row in cur.fetchall()]
        return sorted(records, key=lambda r: (r.model, version_key(r.version)))

    def models(self) -> list[ModelRecord]:
        by_name: dict[str, ModelRecord] = {}
        for row in self.db.execute("SELECT name, created_at, created_by FROM models "
                                   "ORDER BY name").fetchall():
            by_name[row[0]] = ModelRecord(row[0], row[1], row[2])
        for record in self.versions():
            by_name[record.model].versions.append(record)
        return list(by_name.values())

    def model(self, name: str) -> ModelRecord:
        for record in self.models():
            if record.name == name:
                return record
        known = ", ".join(m.name for m in self.models()) or "none"
        raise NotFound(f"model {name!r} is not in the registry (registered: {known})")

    def version(self, name: str, version: str) -> VersionRecord:
        for record in self.model(name).versions:
            if record.version == version:
                return record
        raise NotFound(f"model {name!r} has no version {version!r}")
