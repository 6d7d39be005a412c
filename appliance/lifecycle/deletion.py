"""Deleting a model version: the one path every deletion goes through, retention included.

Refused (409) while any legal hold is active on the version, naming each hold, and for
versions that may be serving or wanted back (shadow, canary, production, deprecated):
those must be archived first. Only ``archived``, ``failed`` and ``registered`` versions
can go. The version row is removed, and an ``events`` row and a ``stage_history`` row
(``→ deleted``) are written, with the generation bumped, in one transaction. Artifact
directories are content-addressed and may be shared by several versions, so they are
removed afterwards, and only those no remaining version references.

SQL here: removes ``versions`` rows, the one deletion path, so the hold check and
the delete share one transaction; history and events go through
:mod:`appliance.registry.events`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..registry import Registry
from ..registry.db import bump_generation, now, transaction
from ..registry.events import record_event, record_stage_change
from .holds import holds_in

DELETABLE = ("archived", "failed", "registered")


@dataclass
class Deletion:
    """What a deletion did."""

    model: str
    version: str
    stage: str
    actor: str
    reason: str
    at: str
    digests: list[str]
    artifacts_removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digests(row_digest: str, variants_json: str | None) -> list[str]:
    """The artifact directories of one version: its main files and each variant's."""
    extra = [str(v["digest"]) for v in json.loads(variants_json or "[]")]
    return list(dict.fromkeys([row_digest, *extra]))


def _referenced(registry: Registry) -> set[str]:
    refs: set[str] = set()
    for digest, variants in registry.db.execute("SELECT digest, variants FROM versions"):
        refs.update(_digests(digest, variants))
    return refs


def _remove_unreferenced(registry: Registry, digests: list[str]) -> list[str]:
    """Remove the artifact directories of ``digests`` that no version references any more.

    Runs under the registry's write lock, so no version recording can slip in between the
    check and the removal from another process that also takes it.
    """
    removed = []
    with transaction(registry.db):
        refs = _referenced(registry)
        for digest in digests:
            path = registry.store.path_for(digest)
            if digest not in refs and path.exists():
                shutil.rmtree(path)
                removed.append(digest)
    return removed


def delete_version(registry: Registry, model: str, version: str, *, actor: str,
                   reason: str) -> Deletion:
    """Delete ``model`` ``version``; Conflict naming the hold(s) or the stage when refused."""
    if not actor or not actor.strip():
        raise BadRequest("who deletes (--by / actor) is required: deletions are audited")
    if not reason or not reason.strip():
        raise BadRequest("a reason is required to delete a version: deletions are audited")
    actor, reason, at = actor.strip(), reason.strip(), now()
    with transaction(registry.db) as db:
        row = db.execute("SELECT stage, digest, variants FROM versions "
                         "WHERE model = ? AND version = ?", [model, version]).fetchone()
        if row is None:
            raise NotFound(f"model {model!r} has no version {version!r}")
        stage, digest, variants = row
        holds = holds_in(db, model, version)
        if holds:
            raise Conflict(f"{model} version {version} cannot be deleted: it is under legal "
                           f"hold ({'; '.join(h.describe() for h in holds)}); the holder must "
                           f"release it first (appliance models release {model} {version} "
                           "--by NAME)")
        if stage not in DELETABLE:
            raise Conflict(f"{model} version {version} is {stage}: archive it first (only "
                           f"{', '.join(DELETABLE)} versions can be deleted)")
        digests = _digests(digest, variants)
        db.execute("DELETE FROM versions WHERE model = ? AND version = ?", [model, version])
        record_stage_change(db, model=model, version=version, from_stage=stage,
                            to_stage="deleted", at=at, actor=actor, reason=reason)
        record_event(db, at=at, actor=actor, action="delete", model=model, version=version,
                     detail={"reason": reason, "stage": stage, "digests": digests})
        bump_generation(db)
    deletion = Deletion(model, version, stage, actor, reason, at, digests)
    deletion.artifacts_removed = _remove_unreferenced(registry, digests)
    return deletion
