"""``appliance models add``: check a model file loads, store it, then record it.

Order matters for atomicity: stage and hash the files, load them from the staging copy
with the chosen backend (a file that does not load is refused before anything is
written), move the staged directory to its content address, and only then insert the
registry rows in one transaction. A failure at any step leaves the registry as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backend import ModelSource, detect_format
from ..errors import Conflict, InvalidModelFile
from ..registry import Registry, VersionRecord
from ..registry.models import check_name
from .catalog import BackendCatalog


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


def import_model(registry: Registry, catalog: BackendCatalog, path: Path, *, name: str,
                 version: str | None = None, created_by: str = "cli",
                 options: dict[str, dict[str, Any]] | None = None) -> VersionRecord:
    """Validate, store and record one model version; return its record."""
    check_name("model name", name)
    version = check_name("version", version) if version else registry.next_version(name)
    fmt, files = model_files(path, catalog.suffixes())
    if any(v.version == version for v in registry.versions(name)):
        raise Conflict(f"model {name!r} already has a version {version!r}; choose another "
                       "--version or omit it to get the next number")
    catalog.choose(fmt)  # fail fast, before copying, when nothing loads this format
    staged, stored = registry.store.stage(files)
    try:
        _, loaded = catalog.load(ModelSource(staged / path.name, fmt), options=options)
        inputs, outputs = list(loaded.inputs), list(loaded.outputs)
        loaded.close()
        digest, _ = registry.store.commit(staged, stored)
    except BaseException:
        registry.store.discard(staged)
        raise
    return registry.record_version(
        model=name, version=version, fmt=fmt, primary_file=path.name, files=stored,
        digest=digest, inputs=inputs, outputs=outputs, created_by=created_by,
        source=str(path.resolve()))
