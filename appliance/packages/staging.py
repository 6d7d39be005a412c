"""Stage one variant of a version: the step ``models add`` and ``models push`` share.

:func:`stage_variant` copies a variant's files into the store's staging area (hashed,
fsynced, encrypted while copied when the store encrypts), loads the staged copy with the
backend catalog (decrypting into memory; a pinned backend first, see
:meth:`~appliance.runtime.catalog.BackendCatalog.pinned`) and reads its signature; an
ONNX variant over :data:`~.weightless.LOAD_CHECK_BYTES` is loaded as its weightless
twin (:mod:`.weightless`), so the check takes megabytes, not the model's size. A
file that does not load is refused before anything is recorded, and its staging
directory is removed. Moving staged directories to their content addresses and
recording the version is the caller's next step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backend import ModelSource, detect_format
from ..errors import BadRequest, InvalidModelFile
from ..registry import Registry, Variant
from ..registry.store import StoredFile
from ..runtime.catalog import BackendCatalog
from ..signature import TensorSpec
from .progress import SILENT, Progress
from .weightless import LOAD_CHECK_BYTES, WeightlessSource, weightless_twin

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")


def check_precision(value: str) -> str:
    """``value`` when it is one of :data:`PRECISIONS`, else BadRequest listing them."""
    if value not in PRECISIONS:
        raise BadRequest(f"precision {value!r} is not known; use one of {', '.join(PRECISIONS)}")
    return value


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
class StagedVariant:
    """One variant's files in staging, with the signature its backend loaded."""

    precision: str
    fmt: str
    source: Path  # the primary file as given (outside the store)
    staged: Path
    stored: list[StoredFile]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def primary_file(self) -> str:
        return self.source.name

    def as_variant(self, digest: str) -> Variant:
        """The registry row of this variant once committed at ``digest``."""
        return Variant(self.precision, self.fmt, self.primary_file, digest,
                       [f.to_dict() for f in self.stored])


def _load_signature(catalog: BackendCatalog, source: ModelSource, pin: str | None,
                    options: Mapping[str, Mapping[str, Any]] | None
                    ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Load ``source`` (the pinned backend when it can load it here, else the profile's
    choice), read its signature and close it."""
    backend, _ = catalog.pinned(pin, source.format)
    if backend is not None:
        loaded = backend.load(source, options=(options or {}).get(backend.name, {}))
    else:
        _, loaded = catalog.load(source, options=options)
    try:
        return list(loaded.inputs), list(loaded.outputs)
    finally:
        loaded.close()


def _checked_signature(registry: Registry, catalog: BackendCatalog, source: ModelSource,
                       stored: Sequence[StoredFile], pin: str | None,
                       options: Mapping[str, Mapping[str, Any]] | None
                       ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The signature of the staged model ``source``: from its weightless twin for a large
    ONNX variant (:mod:`.weightless`: bounded memory), else from a full load."""
    if source.format == "onnx" and sum(f.size for f in stored) > LOAD_CHECK_BYTES:
        sha256 = {f.name: f.sha256 for f in stored}.get(source.path.name)
        with closing(registry.store.reader(source.path, sha256)) as reader:
            twin = weightless_twin(reader)
        if twin is None:
            log.info("%s has large tensors outside its main graph: loading it whole to "
                     "check it", source.path.name)
        else:
            data, promoted = twin
            try:
                inputs, outputs = _load_signature(
                    catalog, WeightlessSource(source.path, source.format, twin=data), pin,
                    options)
            except InvalidModelFile as exc:
                log.warning("the weightless load check of %s failed (%s): loading it "
                            "whole to check it", source.path.name, exc.message)
            else:
                return [s for s in inputs if s.name not in promoted], outputs
    return _load_signature(catalog, source, pin, options)


def stage_variant(registry: Registry, catalog: BackendCatalog, *, precision: str, fmt: str,
                  primary: Path, files: Sequence[Path], pin: str | None = None,
                  options: Mapping[str, Mapping[str, Any]] | None = None,
                  review: Callable[[], None] | None = None,
                  expected: Sequence[tuple[str, str | None]] | None = None,
                  progress: Progress = SILENT) -> StagedVariant:
    """Stage ``files`` (``primary`` among them), load the staged copy, read its signature.

    ``review`` runs after the format check and before anything is copied (the security
    scan); ``expected`` is ``(label, sha256)`` per file, checked against what was
    copied (a file changed while it was being installed is BadRequest). ``pin`` is the
    version's pinned backend, used when it can load ``fmt`` here; else the profile's
    choice, with ``options`` per backend name. ``progress`` is told the steps "staging"
    (with its bytes) and "load check".
    """
    catalog.choose(fmt)  # fail fast, before copying, when nothing loads this format
    if review is not None:
        review()
    progress.step("staging", sum(f.stat().st_size for f in files))
    staged, stored = registry.store.stage(list(files), sealed=True,
                                          on_bytes=progress.advance)
    try:
        for (label, sha256), got in zip(expected or (), stored):
            if got.sha256 != sha256:
                raise BadRequest(f"{label} changed while it was being installed")
        # load what will be stored (decrypted into memory), not the caller's copy
        progress.step("load check")
        source = registry.store.source(staged / primary.name, fmt,
                                       {f.name: f.sha256 for f in stored})
        inputs, outputs = _checked_signature(registry, catalog, source, stored, pin, options)
    except BaseException:
        registry.store.discard(staged)
        raise
    return StagedVariant(precision, fmt, primary, staged, stored, inputs, outputs)
