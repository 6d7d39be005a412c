"""``appliance models add``: check a model's files load, store them, then record them.

Order matters for atomicity: stage and hash each variant's files, load each from its
staging copy (:func:`~appliance.packages.staging.stage_variant`: a file that does not
load is refused before anything is recorded), move the staged directories to their
content addresses, and only then insert the registry rows in one transaction. A failure
at any step leaves the registry as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadRequest, Conflict, InvalidModelFile
from ..registry import Registry, VersionRecord
from ..registry.models import check_name
from ..runtime.catalog import BackendCatalog
from .staging import PRECISIONS, StagedVariant, check_precision, model_files, stage_variant

__all__ = ["PRECISIONS", "import_model", "model_files"]


def _same_names(main: StagedVariant, other: StagedVariant) -> None:
    for kind, a, b in (("inputs", main.inputs, other.inputs),
                       ("outputs", main.outputs, other.outputs)):
        if [s.name for s in a] != [s.name for s in b]:
            raise InvalidModelFile(
                f"variant {other.precision} ({other.primary_file}) has {kind} "
                f"{[s.name for s in b]}, but the main model has {[s.name for s in a]}: every "
                "variant of a version must have the same tensor names")


def _stage(registry: Registry, catalog: BackendCatalog, precision: str, path: Path,
           backend: str | None, options: dict[str, dict[str, Any]] | None) -> StagedVariant:
    from ..security.scan import raise_if_refused, scan_package

    fmt, files = model_files(path, catalog.suffixes())
    return stage_variant(
        registry, catalog, precision=precision, fmt=fmt, primary=path, files=files,
        pin=backend, options=options,
        # pickles, escaping external data, custom ops: refused before anything is copied
        review=lambda: raise_if_refused(scan_package(path)))


def import_model(registry: Registry, catalog: BackendCatalog, path: Path, *, name: str,
                 version: str | None = None, created_by: str = "cli",
                 precision: str = "fp32", variants: list[tuple[str, Path]] | None = None,
                 backend: str | None = None,
                 options: dict[str, dict[str, Any]] | None = None) -> VersionRecord:
    """Validate, store and record one model version (with optional extra variants)."""
    check_name("model name", name)
    version = check_name("version", version) if version else registry.next_version(name)
    if any(v.version == version for v in registry.versions(name)):
        raise Conflict(f"model {name!r} already has a version {version!r}; choose another "
                       "--version or omit it to get the next number")
    if backend:
        catalog.require(backend)
    wanted = [(check_precision(precision), path)] + [
        (check_precision(p), vpath) for p, vpath in variants or []]
    if len({p for p, _ in wanted}) != len(wanted):
        raise BadRequest("each variant needs its own precision: "
                         f"{', '.join(p for p, _ in wanted)}")
    staged: list[StagedVariant] = []
    try:
        for p, vpath in wanted:
            staged.append(_stage(registry, catalog, p, vpath, backend, options))
            _same_names(staged[0], staged[-1])
        committed = [(s, *registry.store.commit(s.staged, s.stored)) for s in staged]
    except BaseException:
        for s in staged:
            registry.store.discard(s.staged)
        raise
    main, digest, _ = committed[0]
    record = registry.record_version(
        model=name, version=version, fmt=main.fmt, primary_file=main.primary_file,
        files=main.stored, digest=digest, inputs=main.inputs, outputs=main.outputs,
        created_by=created_by, source=str(path.resolve()), precision=main.precision,
        variants=[s.as_variant(d) for s, d, _ in committed[1:]], backend=backend)
    from ..security.fingerprint import record_fingerprint

    record_fingerprint(registry, record, sources={p: vpath for p, vpath in wanted})
    return record
