"""``appliance models add``: check a model's files load, store them, then record them.

Order matters for atomicity: stage and hash each variant's files, load each from its
staging copy (a file that does not load is refused before anything is recorded), move
the staged directories to their content addresses, and only then insert the registry
rows in one transaction. A failure at any step leaves the registry as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backend import detect_format
from ..errors import BadRequest, Conflict, InvalidModelFile
from ..registry import Registry, Variant, VersionRecord
from ..registry.models import check_name
from ..registry.store import StoredFile
from ..signature import TensorSpec
from .catalog import BackendCatalog

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")


def model_files(path: Path, suffixes: dict[str, str] | None = None) -> tuple[str, list[Path]]:
    """The format and every file of the model at ``path`` (IR ``.xml`` brings its ``.bin``)."""
    if not path.exists():
        raise InvalidModelFile(f"{path} does not exist")
    if not path.is_file():
        raise InvalidModelFile(f"{path} is not a file: give the model file itself "
                               "(.onnx, .tflite, or OpenVINO .xml with its .bin beside it)")
    try:
        fmt = detect_format(path, suffixes)
    except ValueError as exc:
        raise InvalidModelFile(str(exc)) from None
    files = [path]
    if fmt == "openvino":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise InvalidModelFile(f"OpenVINO IR {path.name} needs its weights file "
                                   f"{weights.name} in the same directory")
        files.append(weights)
    return fmt, files


@dataclass
class _Staged:
    precision: str
    fmt: str
    path: Path
    staged: Path
    stored: list[StoredFile]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def _check_precision(value: str) -> str:
    if value not in PRECISIONS:
        raise BadRequest(f"precision {value!r} is not known; use one of {', '.join(PRECISIONS)}")
    return value


def _stage_variant(registry: Registry, catalog: BackendCatalog, precision: str, path: Path,
                   backend: str | None, options: dict[str, dict[str, Any]] | None) -> _Staged:
    fmt, files = model_files(path, catalog.suffixes())
    catalog.choose(fmt)  # fail fast, before copying, when nothing loads this format
    from ..security.scan import raise_if_refused, scan_package

    raise_if_refused(scan_package(path))  # pickles, escaping external data, custom ops
    staged, stored = registry.store.stage(files, sealed=True)  # encrypted as it is copied
    try:
        source = registry.store.source(staged / path.name, fmt,
                                       {f.name: f.sha256 for f in stored})
        pinned = catalog.by_name(backend) if backend else None
        if pinned is not None and fmt in pinned.formats and catalog.availability(pinned).available:
            loaded = pinned.load(source, options=(options or {}).get(pinned.name, {}))
        else:
            _, loaded = catalog.load(source, options=options)
        inputs, outputs = list(loaded.inputs), list(loaded.outputs)
        loaded.close()
    except BaseException:
        registry.store.discard(staged)
        raise
    return _Staged(precision, fmt, path, staged, stored, inputs, outputs)


def _same_names(main: _Staged, other: _Staged) -> None:
    for kind, a, b in (("inputs", main.inputs, other.inputs),
                       ("outputs", main.outputs, other.outputs)):
        if [s.name for s in a] != [s.name for s in b]:
            raise InvalidModelFile(
                f"variant {other.precision} ({other.path.name}) has {kind} "
                f"{[s.name for s in b]}, but the main model has {[s.name for s in a]}: every "
                "variant of a version must have the same tensor names")


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
    if backend and catalog.by_name(backend) is None:
        raise BadRequest(f"backend {backend!r} is not installed; installed backends: "
                         f"{', '.join(b.name for b in catalog.backends)}")
    wanted = [(_check_precision(precision), path)] + [
        (_check_precision(p), vpath) for p, vpath in variants or []]
    if len({p for p, _ in wanted}) != len(wanted):
        raise BadRequest("each variant needs its own precision: "
                         f"{', '.join(p for p, _ in wanted)}")
    staged: list[_Staged] = []
    try:
        for p, vpath in wanted:
            staged.append(_stage_variant(registry, catalog, p, vpath, backend, options))
            _same_names(staged[0], staged[-1])
        committed = [(s, *registry.store.commit(s.staged, s.stored)) for s in staged]
    except BaseException:
        for s in staged:
            registry.store.discard(s.staged)
        raise
    main, digest, _ = committed[0]
    extra = [Variant(s.precision, s.fmt, s.path.name, d, [f.to_dict() for f in s.stored])
             for s, d, _ in committed[1:]]
    record = registry.record_version(
        model=name, version=version, fmt=main.fmt, primary_file=main.path.name,
        files=main.stored, digest=digest, inputs=main.inputs, outputs=main.outputs,
        created_by=created_by, source=str(path.resolve()), precision=main.precision,
        variants=extra, backend=backend)
    from ..security.fingerprint import record_fingerprint

    record_fingerprint(registry, record, sources={p: vpath for p, vpath in wanted})
    return record
